// Package validate checks the Kubernetes manifests in deploy/kubernetes without a
// cluster. It is its own Go module so that the main module gains no Kubernetes
// dependencies.
//
//	cd deploy/kubernetes/validate && go test ./...
//
// The tests decode every manifest strictly into the Kubernetes API types (an unknown
// or misspelt field is an error), build the kustomization the way
// `kubectl apply -k deploy/kubernetes/` does, and assert the deployment's security
// properties: only panopticon holds NET_ADMIN, it is a native sidecar whose startup
// probe is `panopticon healthcheck`, the agent is unprivileged and never sees a real
// secret, the allowlist ConfigMap is mounted so that updates reach it, and the agent
// trusts the CA exported onto the shared volume.
//
// Non-goals: server-side validation (admission, defaulting, quotas), and proving the
// pod works; the Docker and namespace end-to-end tests cover panopticon's behaviour.
package validate
