package mountconfig_test

import (
	"path/filepath"
	"testing"

	"github.com/secretfs/secretfs/mountconfig"
)

// What a user reads of a refused file is "FILE:LINE: what is wrong",
// naming the view once, without the operations and kinds of the
// packages that found it (render.Compile, store.ValidName, "invalid
// argument"), which are for logs.
func TestAViewThatDoesNotCompileReadsCleanly(t *testing.T) {
	for _, tc := range []struct{ name, view, want string }{
		{"a path of three parts", "  - path: billing/sub/v\n    app: billing\n    format: json\n",
			`c.yaml:2: view path "billing/sub/v": name contains '/' or NUL`},
		{"a path of one part", "  - path: billing\n    app: billing\n    format: json\n",
			`c.yaml:2: view path "billing": want application/name`},
		{"a reserved name", "  - path: billing/..\n    app: billing\n    format: json\n",
			`c.yaml:2: view path "billing/..": name ".." is reserved`},
		{"no application", "  - path: /v\n    app: billing\n    format: json\n",
			`c.yaml:2: view path "/v": empty name`},
		{"a bad application", "  - path: billing/v\n    app: bill/ing\n    format: json\n",
			`c.yaml:2: the view billing/v: app "bill/ing": name contains '/' or NUL`},
		{"a bad format", "  - path: billing/v\n    app: billing\n    format: xml\n",
			`c.yaml:2: the view billing/v: format "xml": want json, dotenv, yaml or properties`},
		{"a bad secret", "  - path: billing/v\n    secret: billing/x/y\n    field: a\n",
			`c.yaml:2: the view billing/v: secret "billing/x/y": name contains '/' or NUL`},
		{"a template's bad secret", "  - path: billing/v\n    template: '{{ secret \"a/b/c\" }}'\n",
			`c.yaml:2: the view billing/v: template: line 1, column 4: secret: "a/b/c": name contains '/' or NUL`},
		{"a field without its secret", "  - path: billing/v\n    field: a\n",
			`c.yaml:2: the view billing/v: field needs secret: the secret whose value is JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mountconfig.Parse("c.yaml", []byte("views:\n"+tc.view))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse: %v\nwant        %s", err, tc.want)
			}
		})
	}
}

// A file that cannot be read is named once, with why.
func TestAFileThatCannotBeReadIsNamedOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := mountconfig.Load(missing); err == nil || err.Error() != missing+": no such file or directory" {
		t.Errorf("Load: %v, want %q", err, missing+": no such file or directory")
	}
}
