package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// CookieName is the session cookie set by /?token=.
const CookieName = "panopticon_session"

// cookieMaxAge keeps a browser logged in for a week.
const cookieMaxAge = 7 * 24 * 3600

// cookieValue derives the session cookie from the token, so the cookie
// never holds the token itself.
func cookieValue(token string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("panopticon dashboard session v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

// equal compares in constant time, also over the lengths.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// authenticated reports whether r carries the token (bearer) or the cookie.
func (s *Server) authenticated(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), s.opts.Token)
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return equal(c.Value, s.cookie)
	}
	return false
}

// requireToken guards every route. A request with ?token= is a login: a
// right token sets the cookie and redirects to the same URL without it.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w)
		q := r.URL.Query()
		if q.Has("token") {
			if !equal(q.Get("token"), s.opts.Token) {
				unauthorized(w, r)
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: CookieName, Value: s.cookie, Path: "/", MaxAge: cookieMaxAge,
				HttpOnly: true, SameSite: http.SameSiteStrictMode,
			})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if !s.authenticated(r) {
			unauthorized(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="panopticon"`)
	if r.URL.Path == "/" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(loginPage))
		return
	}
	http.Error(w, "401 unauthorized: send Authorization: Bearer <DASHBOARD_TOKEN>", http.StatusUnauthorized)
}

const loginPage = `<!doctype html><meta charset="utf-8"><title>Panopticon</title>
<style>body{font:15px system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}code{background:#eee;padding:.1em .3em}</style>
<h1>Panopticon</h1><p>This dashboard needs its token. Open the address panopticon printed at start-up,
<code>http://HOST:PORT/?token=…</code>, or the one built from <code>DASHBOARD_TOKEN</code>.</p>`

// errCrossOrigin is what a state change from another origin gets.
var errCrossOrigin = errors.New("cross-origin request refused")

// mutation guards a state-changing call: POST only, JSON only, and from the
// dashboard's own origin (a bearer token is not sent by browsers on their own,
// but the cookie is: the origin check is what stops cross-site requests).
func (s *Server) mutation(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "405 method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		if err := s.cop.Check(r); err != nil {
			http.Error(w, "403 "+errCrossOrigin.Error(), http.StatusForbidden)
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			http.Error(w, "415 send Content-Type: application/json", http.StatusUnsupportedMediaType)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next(w, r)
	}
}

func setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}
