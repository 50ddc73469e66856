package config

import (
	"os"
	"strings"
	"testing"
)

// Every variable panopticon reads is documented in the README table and in
// .env.example, with the same default.
func TestEveryVariableIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars {
		t.Run(v.Name, func(t *testing.T) {
			if !strings.Contains(string(readme), "`"+v.Name+"`") {
				t.Errorf("README.md does not document %s", v.Name)
			}
			if !strings.Contains(string(example), "#"+v.Name+"="+v.Default+"\n") {
				t.Errorf(".env.example lacks the line #%s=%s", v.Name, v.Default)
			}
		})
	}
}
