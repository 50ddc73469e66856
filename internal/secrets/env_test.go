package secrets

import (
	"maps"
	"strings"
	"testing"
)

func TestFromEnvErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"a value without domains", map[string]string{"PLACEHOLDER_SECRET_VALUE_A": "value-123456"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_A", "PLACEHOLDER_SECRET_VALUE_A"}},
		{"domains without a value", map[string]string{"PLACEHOLDER_SECRET_DOMAINS_B": "b.test"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_B is set but PLACEHOLDER_SECRET_VALUE_B is not"}},
		{"pins without a value", map[string]string{"PLACEHOLDER_SECRET_PINS_B": "sha256/x"},
			[]string{"PLACEHOLDER_SECRET_PINS_B"}},
		{"an empty value", map[string]string{"PLACEHOLDER_SECRET_VALUE_C": "", "PLACEHOLDER_SECRET_DOMAINS_C": "c.test"},
			[]string{"PLACEHOLDER_SECRET_VALUE_C is empty"}},
		{"empty domains", map[string]string{"PLACEHOLDER_SECRET_VALUE_C": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_C": " "},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_C"}},
		{"a bad domain pattern", map[string]string{"PLACEHOLDER_SECRET_VALUE_D": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_D": "ok.test,*"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_D:2"}},
		{"an IP literal domain", map[string]string{"PLACEHOLDER_SECRET_VALUE_D": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_D": "10.0.0.1"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_D:1"}},
		{"a domain with a port", map[string]string{"PLACEHOLDER_SECRET_VALUE_D": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_D": "d.test:8443"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_D:1", "no port"}},
		{"an empty pattern between commas", map[string]string{"PLACEHOLDER_SECRET_VALUE_D": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_D": "a.test,,b.test"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_D", "extra comma"}},
		{"a comment smuggled into the list", map[string]string{"PLACEHOLDER_SECRET_VALUE_D": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_D": "a.test#evil.test"},
			[]string{"PLACEHOLDER_SECRET_DOMAINS_D"}},
		{"a placeholder that is a prefix of another", map[string]string{
			"PLACEHOLDER_SECRET_VALUE_A": "value-aaaaaa", "PLACEHOLDER_SECRET_DOMAINS_A": "a.test",
			"PLACEHOLDER_SECRET_VALUE_AB": "value-bbbbbb", "PLACEHOLDER_SECRET_DOMAINS_AB": "a.test"},
			[]string{"PLACEHOLDER_SECRET_VALUE_A is a prefix of PLACEHOLDER_SECRET_VALUE_AB"}},
		{"a bad pin prefix", map[string]string{"PLACEHOLDER_SECRET_VALUE_E": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_E": "e.test", "PLACEHOLDER_SECRET_PINS_E": "md5/abc"},
			[]string{"PLACEHOLDER_SECRET_PINS_E: pin 1"}},
		{"a pin of the wrong length", map[string]string{"PLACEHOLDER_SECRET_VALUE_E": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_E": "e.test", "PLACEHOLDER_SECRET_PINS_E": "sha256/AAAA"},
			[]string{"PLACEHOLDER_SECRET_PINS_E: pin 1"}},
		{"a name with odd characters", map[string]string{"PLACEHOLDER_SECRET_VALUE_A-B": "value-123456", "PLACEHOLDER_SECRET_DOMAINS_A-B": "e.test"},
			[]string{"PLACEHOLDER_SECRET_VALUE_A-B:", "PLACEHOLDER_SECRET_DOMAINS_A-B:"}},
		{"a value with a stray carriage return", map[string]string{"PLACEHOLDER_SECRET_VALUE_F": "value-123456\r", "PLACEHOLDER_SECRET_DOMAINS_F": "f.test"},
			[]string{"PLACEHOLDER_SECRET_VALUE_F contains a control character"}},
		{"a value inside a placeholder", map[string]string{"PLACEHOLDER_SECRET_VALUE_G": "SECRET_VALUE", "PLACEHOLDER_SECRET_DOMAINS_G": "g.test"},
			[]string{"PLACEHOLDER_SECRET_VALUE_G: the value occurs inside the placeholder"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error naming the variable", func(t *testing.T) {
			tab, _, err := FromEnv(tt.env)
			if err == nil {
				t.Fatalf("no error; table %v", tab)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for k, v := range tt.env {
				if strings.HasPrefix(k, ValuePrefix) && len(v) > 0 && !strings.Contains(k, v) && strings.Contains(err.Error(), v) {
					t.Errorf("error %q contains the value", err)
				}
			}
		})
	}
}

func TestFromEnvWarnings(t *testing.T) {
	t.Run("a value with a dollar sign warns without printing the value", func(t *testing.T) {
		env := testEnv()
		env["PLACEHOLDER_SECRET_VALUE_DOLLAR"] = "abc$FAKEdollar99"
		env["PLACEHOLDER_SECRET_DOMAINS_DOLLAR"] = "d.test"
		_, warnings, err := FromEnv(env)
		if err != nil {
			t.Fatal(err)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], "PLACEHOLDER_SECRET_VALUE_DOLLAR") || !strings.Contains(warnings[0], "single-quoted") {
			t.Fatalf("warnings = %q", warnings)
		}
		if strings.Contains(warnings[0], "FAKEdollar") || strings.Contains(warnings[0], "abc$") {
			t.Errorf("warning contains the value: %q", warnings[0])
		}
	})
	t.Run("a short value warns", func(t *testing.T) {
		env := maps.Clone(testEnv())
		env["PLACEHOLDER_SECRET_VALUE_SHORT"] = "k3y"
		env["PLACEHOLDER_SECRET_DOMAINS_SHORT"] = "d.test"
		_, warnings, err := FromEnv(env)
		if err != nil || len(warnings) != 1 || strings.Contains(warnings[0], "k3y") {
			t.Fatalf("warnings %q err %v", warnings, err)
		}
	})
}

func TestFromEnvTable(t *testing.T) {
	tab := testTable(t)
	if got := strings.Join(tab.Names(), ","); got != githubPH+","+openaiPH+","+pinnedPH {
		t.Errorf("Names() = %s", got)
	}
	if tab.Len() != 3 {
		t.Errorf("Len() = %d", tab.Len())
	}
	if p := tab.Pins(pinnedPH); len(p) != 1 || string(p[0]) != string(goodPin[:]) {
		t.Errorf("Pins = %x", p)
	}
	if p := tab.Pins(openaiPH); len(p) != 0 {
		t.Errorf("unpinned secret has pins %x", p)
	}
	s, _ := tab.Secret(openaiPH)
	if strings.Join(s.Domains, ",") != "api.openai.test,*.openai-cdn.test" {
		t.Errorf("Domains = %v", s.Domains)
	}
	if got := tab.AuthorisedFor("x.openai-cdn.test"); len(got) != 1 || got[0] != openaiPH {
		t.Errorf("AuthorisedFor = %v", got)
	}
	if name, ok := tab.ContainsValue([]byte("..." + githubValue)); !ok || name != githubPH {
		t.Errorf("ContainsValue = %q %v", name, ok)
	}
	if _, ok := tab.ContainsValue([]byte(openaiPH)); ok {
		t.Error("a placeholder counted as a value")
	}
	if tab, _, err := FromEnv(map[string]string{"PATH": "/bin"}); err != nil || tab.Len() != 0 {
		t.Errorf("no secrets: %v %v", tab, err)
	}
}
