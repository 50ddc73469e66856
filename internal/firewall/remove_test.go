package firewall

import (
	"errors"
	"fmt"
)

// The product never removes its firewall (it stays when the proxy dies, so
// the app stays offline); the tests remove it to leave a namespace as they
// found it.

// Remove deletes p's jumps (every copy) and then our chains. Missing jumps
// and chains are not errors.
func Remove(r Runner, p Plan) error {
	var errs []error
	for _, j := range p.Jumps {
		// iptables -C fails (not "false") when the target chain is gone, and
		// a jump cannot exist without its target.
		ok, err := r.ChainExists(j.Table, jumpTarget(j))
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall: checking %s chain %s/%s: %w", p.Family, j.Table, jumpTarget(j), err))
			continue
		}
		if !ok {
			continue
		}
		for range maxDuplicateJumps {
			present, err := r.Exists(j.Table, j.Chain, j.Args...)
			if err == nil && present {
				err = r.DeleteIfExists(j.Table, j.Chain, j.Args...)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("firewall: deleting %s jump %s/%s: %w", p.Family, j.Table, j, err))
				break
			}
			if !present {
				break
			}
		}
	}
	for _, c := range p.Chains {
		if err := r.ClearAndDeleteChain(c.Table, c.Name); err != nil {
			errs = append(errs, fmt.Errorf("firewall: deleting %s chain %s/%s: %w", p.Family, c.Table, c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// maxDuplicateJumps bounds the loop that removes repeated copies of a jump.
const maxDuplicateJumps = 16
