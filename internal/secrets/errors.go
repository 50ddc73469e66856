package secrets

import (
	"errors"
	"fmt"
)

// Sentinel kinds of Violation. Callers map all of them to 403 and test with
// errors.Is.
var (
	ErrUnauthorized = errors.New("placeholder not authorised for this host")
	ErrPlainHTTP    = errors.New("placeholder in a plain-HTTP request")
	ErrLeak         = errors.New("real secret value in a request")
	ErrPinMismatch  = errors.New("upstream key not pinned for this secret")
)

// Violation is why a request may not go on. It names the secret and the host,
// never a value.
type Violation struct {
	Secret string // placeholder name
	Host   string // verified destination
	Kind   error  // one of the sentinels
	Where  string // optional: "header name", "Host", "websocket", …
}

func (v *Violation) Error() string {
	var s string
	switch v.Kind {
	case ErrUnauthorized:
		s = fmt.Sprintf("secret %s is not authorised for host %s", v.Secret, v.Host)
	case ErrPlainHTTP:
		s = fmt.Sprintf("secret %s may not be sent to host %s over plain HTTP", v.Secret, v.Host)
	case ErrLeak:
		s = fmt.Sprintf("the real value of secret %s was found in a request to host %s", v.Secret, v.Host)
	case ErrPinMismatch:
		s = fmt.Sprintf("host %s did not present a key pinned for secret %s", v.Host, v.Secret)
	default:
		s = fmt.Sprintf("secret %s, host %s: %v", v.Secret, v.Host, v.Kind)
	}
	if v.Where != "" {
		s += " (in " + v.Where + ")"
	}
	return s
}

// Unwrap returns the sentinel kind.
func (v *Violation) Unwrap() error { return v.Kind }
