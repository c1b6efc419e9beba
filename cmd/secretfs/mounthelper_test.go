package main

import (
	"slices"
	"strings"
	"testing"
)

func TestMountHelperFormIsTranslatedToMountDaemon(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"local:/var/lib/secretfs", "/run/secrets", "-o", "ro,allow_other,uid=1000,file_mode=0400,apps=a:b:c,defaults,nofail,x-systemd.automount"},
			[]string{"mount", "--daemon", "/run/secrets", "--backend", "local", "--data-dir", "/var/lib/secretfs",
				"--read-only", "--allow-other", "--uid=1000", "--file-mode=0400", "--apps=a,b,c"}},
		{[]string{"dynamodb:secrets", "/run/secrets", "-o", "kms_key=alias/x,region=eu-west-1,stale_if_error=10m", "-n"},
			[]string{"mount", "--daemon", "/run/secrets", "--backend", "dynamodb", "--table", "secrets",
				"--kms-key=alias/x", "--region=eu-west-1", "--stale-if-error=10m"}},
		{[]string{"local:/d", "/m", "-orw,_netdev"}, []string{"mount", "--daemon", "/m", "--backend", "local", "--data-dir", "/d"}},
	} {
		got, ok, err := mountHelperArgs(tc.args)
		if !ok || err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, %v, %v; want %q", tc.args, got, ok, err, tc.want)
		}
	}
}

func TestMountHelperRefusesUnknownOptionsAndLeavesVerbsAlone(t *testing.T) {
	for _, args := range [][]string{
		{"local:/d", "/m", "-o", "bogus"},
		{"local:/d", "/m", "-o", "ttl"},
		{"local:", "/m"},
		{"local:/d", "/m", "extra"},
	} {
		if _, ok, err := mountHelperArgs(args); !ok || err == nil {
			t.Errorf("%q: ok %v, err %v; want a refusal", args, ok, err)
		}
	}
	_, _, err := mountHelperArgs([]string{"local:/d", "/m", "-o", "bogus=1"})
	if err == nil || !strings.Contains(err.Error(), `unknown mount option "bogus=1"`) || !strings.Contains(err.Error(), "apps=a:b:c") {
		t.Errorf("message %v", err)
	}
	for _, args := range [][]string{{"mount", "/m"}, {"get", "app/s"}, {"ls"}, {"/m", "local:/d"}} {
		if _, ok, _ := mountHelperArgs(args); ok {
			t.Errorf("%q taken for the mount(8) form", args)
		}
	}
}
