package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifestDir is deploy/kubernetes, seen from this module.
const manifestDir = ".."

// kustomization is the part of kustomize's Kustomization this directory uses.
// Decoding into it strictly makes any other field an error: add it here when
// kustomization.yaml needs it.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// object is one decoded manifest document.
type object struct {
	source string // file:document
	kind   string
	obj    any
}

// newObject returns an empty typed object for apiVersion/kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/Pod":
		return &corev1.Pod{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q kind %q: not a kind these manifests use (add it to newObject)", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeDocs splits multi-document YAML and decodes each document strictly
// into its typed object. Empty documents (comments only) are skipped.
func decodeDocs(name string, data []byte) ([]object, error) {
	var out []object
	for i, doc := range docSeparator.Split(string(data), -1) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if meta.APIVersion == "" && meta.Kind == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				return nil, fmt.Errorf("%s: document %d has no apiVersion and kind", name, i+1)
			}
			continue
		}
		obj, err := newObject(meta.APIVersion, meta.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", name, i+1, meta.Kind, err)
		}
		out = append(out, object{source: fmt.Sprintf("%s:%d", name, i+1), kind: meta.Kind, obj: obj})
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// manifestFiles lists the YAML files of deploy/kubernetes (not recursive).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(manifestDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	if len(files) == 0 {
		t.Fatalf("no YAML files in %s", manifestDir)
	}
	return files
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	return k
}

// TestManifestsDecodeStrictly decodes every document of every file.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			if name == "kustomization.yaml" {
				readKustomization(t)
				return
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeDocs(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatalf("%s holds no Kubernetes object", name)
			}
		})
	}
}

// TestStrictDecodingRejects makes sure the decoder above is really strict.
func TestStrictDecodingRejects(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndta: {a: b}\n"},
		{"misspelt nested field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: p\n          image: p\n          restartPolicyy: Always\n"},
		{"wrong type", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ntype: Opaque\nstringData: [a]\n"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Sercet\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeDocs("test.yaml", []byte(tt.doc)); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
}

// TestKustomizationResources checks that every resource exists and decodes,
// and that every manifest here is either a resource or a documented example.
func TestKustomizationResources(t *testing.T) {
	k := readKustomization(t)
	if k.Namespace == "" {
		t.Error("kustomization.yaml sets no namespace")
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
		data, err := os.ReadFile(filepath.Join(manifestDir, r))
		if err != nil {
			t.Errorf("resource %s: %v", r, err)
			continue
		}
		if objs, err := decodeDocs(r, data); err != nil {
			t.Error(err)
		} else if len(objs) == 0 {
			t.Errorf("resource %s holds no object", r)
		}
	}
	for _, f := range manifestFiles(t) {
		name := filepath.Base(f)
		isExample := strings.HasSuffix(name, ".example.yaml")
		switch {
		case name == "kustomization.yaml":
		case isExample && listed[name]:
			t.Errorf("%s is an example and must not be a resource (applying it would overwrite real values)", name)
		case !isExample && !listed[name]:
			t.Errorf("%s is not listed in kustomization.yaml resources (name it *.example.yaml if it is an example)", name)
		}
	}
}

// build renders the kustomization as `kubectl kustomize` does.
func build(t *testing.T) []object {
	t.Helper()
	dir, err := filepath.Abs(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocs("kustomize build", out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestKustomizeBuild renders the base and checks what kubectl apply -k would send.
func TestKustomizeBuild(t *testing.T) {
	k := readKustomization(t)
	objs := build(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
		if o.kind == "Namespace" || o.kind == "Secret" {
			continue
		}
		if ns := o.obj.(metav1.Object).GetNamespace(); ns != k.Namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.obj.(metav1.Object).GetName(), ns, k.Namespace)
		}
	}
	for _, want := range []string{"Namespace", "ConfigMap", "Deployment", "NetworkPolicy"} {
		if kinds[want] == 0 {
			t.Errorf("the build holds no %s", want)
		}
	}
	if kinds["Secret"] != 0 {
		t.Error("the build holds a Secret: re-applying it would overwrite the real one")
	}
}

// fleet is what the security checks look at.
type fleet struct {
	deploy     *appsv1.Deployment
	allowlist  []*corev1.ConfigMap
	netpols    []*networkingv1.NetworkPolicy
	secret     *corev1.Secret // from secret.example.yaml
	panopticon *corev1.Container
	agent      *corev1.Container
}

func loadFleet(t *testing.T) fleet {
	t.Helper()
	var f fleet
	for _, o := range build(t) {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			if f.deploy != nil {
				t.Fatal("more than one Deployment; extend the checks")
			}
			f.deploy = v
		case *corev1.ConfigMap:
			f.allowlist = append(f.allowlist, v)
		case *networkingv1.NetworkPolicy:
			f.netpols = append(f.netpols, v)
		}
	}
	if f.deploy == nil {
		t.Fatal("no Deployment in the build")
	}
	data, err := os.ReadFile(filepath.Join(manifestDir, "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocs("secret.example.yaml", data)
	if err != nil || len(objs) != 1 {
		t.Fatalf("secret.example.yaml: %v (%d objects)", err, len(objs))
	}
	f.secret = objs[0].obj.(*corev1.Secret)

	spec := &f.deploy.Spec.Template.Spec
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "panopticon" {
			f.panopticon = &spec.InitContainers[i]
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == "agent" {
			f.agent = &spec.Containers[i]
		}
	}
	if f.panopticon == nil || f.agent == nil {
		t.Fatal(`want an init container "panopticon" and a container "agent"`)
	}
	return f
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func mountOf(c *corev1.Container, volumeName string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volumeName {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

func TestSecurity(t *testing.T) {
	f := loadFleet(t)
	spec := &f.deploy.Spec.Template.Spec

	t.Run("pod wiring is consistent", func(t *testing.T) {
		sel, err := metav1.LabelSelectorAsSelector(f.deploy.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(f.deploy.Spec.Template.Labels)) {
			t.Errorf("the Deployment's selector does not match its pod template (%v)", err)
		}
		for _, c := range allContainers(spec) {
			for _, m := range c.VolumeMounts {
				if volume(spec, m.Name) == nil {
					t.Errorf("container %s mounts undeclared volume %s", c.Name, m.Name)
				}
			}
		}
	})

	t.Run("only panopticon holds NET_ADMIN; nothing is privileged", func(t *testing.T) {
		for _, c := range allContainers(spec) {
			sc := c.SecurityContext
			if sc != nil && sc.Privileged != nil && *sc.Privileged {
				t.Errorf("container %s is privileged", c.Name)
			}
			hasNetAdmin := sc != nil && sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "NET_ADMIN")
			if hasNetAdmin != (c.Name == "panopticon") {
				t.Errorf("container %s: NET_ADMIN = %v", c.Name, hasNetAdmin)
			}
		}
	})

	t.Run("panopticon is a native sidecar gated by its healthcheck", func(t *testing.T) {
		p := f.panopticon
		if p.RestartPolicy == nil || *p.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Error("panopticon: want restartPolicy Always (a native sidecar)")
		}
		if spec.InitContainers[0].Name != "panopticon" {
			t.Error("panopticon must be the first init container, so nothing runs before the firewall")
		}
		want := []string{"panopticon", "healthcheck"}
		for name, probe := range map[string]*corev1.Probe{"startupProbe": p.StartupProbe, "readinessProbe": p.ReadinessProbe, "livenessProbe": p.LivenessProbe} {
			if probe == nil || probe.Exec == nil || !slices.Equal(probe.Exec.Command, want) {
				t.Errorf("panopticon %s: want exec %q", name, want)
			}
		}
		sc := p.SecurityContext
		switch {
		case sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0:
			t.Error("panopticon: want runAsUser 0 (it drops itself to PROXY_UID)")
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Error("panopticon: want allowPrivilegeEscalation false")
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
			t.Error("panopticon: want capabilities drop [ALL], then add what it needs")
		}
		if sc != nil && sc.Capabilities != nil {
			allowed := []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE", "SETUID", "SETGID", "SETPCAP", "CHOWN", "DAC_OVERRIDE", "NET_RAW"}
			for _, c := range sc.Capabilities.Add {
				if !slices.Contains(allowed, c) {
					t.Errorf("panopticon adds %s, which it does not need", c)
				}
			}
		}
	})

	t.Run("agent is unprivileged", func(t *testing.T) {
		sc := f.agent.SecurityContext
		if sc == nil {
			t.Fatal("agent: no securityContext")
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("agent: want runAsNonRoot true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser == 0 || *sc.RunAsUser == 1337 {
			t.Error("agent: want an explicit uid other than 0 and PROXY_UID 1337")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("agent: want allowPrivilegeEscalation false")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Error("agent: want capabilities drop [ALL] and nothing added")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("agent: want readOnlyRootFilesystem true")
		}
	})

	t.Run("agent never sees a real secret", func(t *testing.T) {
		values := map[string]bool{}
		for k, v := range f.secret.StringData {
			values[v] = true
			if strings.HasPrefix(k, "PLACEHOLDER_SECRET_VALUE_") && !strings.Contains(strings.ToUpper(v), "FAKE") {
				t.Errorf("secret.example.yaml %s does not look fake: mark example values with FAKE", k)
			}
		}
		for _, e := range f.agent.EnvFrom {
			if e.SecretRef != nil {
				t.Errorf("agent: envFrom Secret %s", e.SecretRef.Name)
			}
		}
		placeholders := 0
		for _, e := range f.agent.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("agent: env %s comes from Secret %s", e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
			if strings.HasPrefix(e.Name, "PLACEHOLDER_SECRET_") {
				t.Errorf("agent: env %s is panopticon's configuration", e.Name)
			}
			if values[e.Value] {
				t.Errorf("agent: env %s holds a value of the Secret", e.Name)
			}
			if _, ok := f.secret.StringData[e.Value]; ok && strings.HasPrefix(e.Value, "PLACEHOLDER_SECRET_VALUE_") {
				placeholders++
			}
		}
		if placeholders == 0 {
			t.Error("agent: no env var holds a placeholder the Secret defines (the example should show one)")
		}
		for _, m := range f.agent.VolumeMounts {
			v := volume(spec, m.Name)
			if v == nil {
				continue
			}
			if v.Secret != nil {
				t.Errorf("agent mounts Secret volume %s", m.Name)
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						t.Errorf("agent mounts projected Secret in %s", m.Name)
					}
				}
			}
		}
		refs := false
		for _, e := range f.panopticon.EnvFrom {
			refs = refs || (e.SecretRef != nil && e.SecretRef.Name == f.secret.Name)
		}
		if !refs {
			t.Errorf("panopticon does not take its environment from Secret %s", f.secret.Name)
		}
		caDir, _ := envValue(f.panopticon, "CA_DIR")
		for _, m := range f.agent.VolumeMounts {
			if pm := mountOf(f.panopticon, m.Name); pm != nil && caDir != "" && strings.HasPrefix(caDir+"/", strings.TrimSuffix(pm.MountPath, "/")+"/") {
				t.Errorf("agent mounts %s, which holds panopticon's CA key (CA_DIR %s)", m.Name, caDir)
			}
		}
	})

	t.Run("allowlist ConfigMap is mounted as a directory", func(t *testing.T) {
		file, ok := envValue(f.panopticon, "ALLOWLIST_FILE")
		if !ok {
			file = "/etc/panopticon/allowlist.txt" // the default
		}
		found := false
		for _, m := range f.panopticon.VolumeMounts {
			v := volume(spec, m.Name)
			if v == nil || v.ConfigMap == nil || filepath.Dir(file) != filepath.Clean(m.MountPath) {
				continue
			}
			found = true
			if m.SubPath != "" || m.SubPathExpr != "" {
				t.Errorf("volume %s uses subPath: the kubelet never updates a subPath mount", m.Name)
			}
			key := filepath.Base(file)
			var cm *corev1.ConfigMap
			for _, c := range f.allowlist {
				if c.Name == v.ConfigMap.Name {
					cm = c
				}
			}
			switch {
			case cm == nil:
				t.Errorf("ConfigMap %s is not part of the build", v.ConfigMap.Name)
			case cm.Data[key] == "":
				t.Errorf("ConfigMap %s has no key %s", cm.Name, key)
			}
			if len(v.ConfigMap.Items) != 0 {
				t.Errorf("volume %s lists items; keep the key name so ALLOWLIST_FILE stays right", m.Name)
			}
		}
		if !found {
			t.Errorf("no ConfigMap is mounted at %s (ALLOWLIST_FILE %s)", filepath.Dir(file), file)
		}
	})

	t.Run("agent trusts the CA on the shared volume", func(t *testing.T) {
		exportDir, ok := envValue(f.panopticon, "CA_EXPORT_DIR")
		if !ok {
			exportDir = "/panopticon-certs"
		}
		var shared *corev1.VolumeMount
		for i, m := range f.panopticon.VolumeMounts {
			if filepath.Clean(m.MountPath) == filepath.Clean(exportDir) {
				shared = &f.panopticon.VolumeMounts[i]
			}
		}
		if shared == nil {
			t.Fatalf("panopticon mounts no volume at CA_EXPORT_DIR %s", exportDir)
		}
		if v := volume(spec, shared.Name); v == nil || v.EmptyDir == nil {
			t.Errorf("volume %s should be an emptyDir", shared.Name)
		}
		am := mountOf(f.agent, shared.Name)
		if am == nil {
			t.Fatalf("agent does not mount %s", shared.Name)
		}
		if !am.ReadOnly {
			t.Errorf("agent mounts %s writable", shared.Name)
		}
		want := map[string]string{
			"SSL_CERT_FILE":       "ca-bundle.pem",
			"REQUESTS_CA_BUNDLE":  "ca-bundle.pem",
			"CURL_CA_BUNDLE":      "ca-bundle.pem",
			"NODE_EXTRA_CA_CERTS": "ca-cert.pem",
		}
		for name, file := range want {
			got, _ := envValue(f.agent, name)
			if got != filepath.Join(am.MountPath, file) {
				t.Errorf("agent %s = %q, want %q", name, got, filepath.Join(am.MountPath, file))
			}
		}
	})

	t.Run("flows and metrics reach the cluster", func(t *testing.T) {
		if v, _ := envValue(f.panopticon, "FLOW_STDOUT"); v != "json" {
			t.Errorf("panopticon FLOW_STDOUT = %q, want json", v)
		}
		port, ok := envValue(f.panopticon, "DASHBOARD_PORT")
		if !ok {
			port = "8081"
		}
		ann := f.deploy.Spec.Template.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("pod annotations %v: want prometheus.io scrape/port %s/path /metrics", ann, port)
		}
	})

	t.Run("NetworkPolicy selects the agent pods", func(t *testing.T) {
		if len(f.netpols) == 0 {
			t.Fatal("no NetworkPolicy")
		}
		for _, np := range f.netpols {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(labels.Set(f.deploy.Spec.Template.Labels)) {
				t.Errorf("NetworkPolicy %s does not select the agent pods (%v)", np.Name, err)
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("NetworkPolicy %s does not restrict egress", np.Name)
			}
		}
	})
}

// TestManifestsHaveNoTabs guards against a classic YAML mistake editors make.
func TestManifestsHaveNoTabs(t *testing.T) {
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.IndexByte(data, '\t'); i >= 0 {
			t.Errorf("%s: tab at byte %d", filepath.Base(f), i)
		}
	}
}
