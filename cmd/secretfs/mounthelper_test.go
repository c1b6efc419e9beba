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

// kms_read_keys takes the keys separated by colons, since commas separate
// mount options, and keeps each ARN whole.
func TestMountHelperKMSReadKeysTakesColonSeparatedKeys(t *testing.T) {
	const (
		keyARN   = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		aliasARN = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/old"
		keyID    = "0987dcba-09fe-87dc-65ba-ab0987654321"
	)
	for value, want := range map[string]string{
		"alias/a":                           "alias/a",
		"alias/a:alias/b":                   "alias/a,alias/b",
		keyARN:                              keyARN,
		"alias/a:" + keyARN + ":" + keyID:   "alias/a," + keyARN + "," + keyID,
		keyARN + ":" + aliasARN:             keyARN + "," + aliasARN,
		keyID + ":" + aliasARN + ":alias/c": keyID + "," + aliasARN + ",alias/c",
	} {
		args := []string{"dynamodb:secrets", "/run/secrets", "-o", "ro,kms_key=alias/a,kms_read_keys=" + value + ",nofail"}
		got, ok, err := mountHelperArgs(args)
		wantArgs := []string{"mount", "--daemon", "/run/secrets", "--backend", "dynamodb", "--table", "secrets",
			"--read-only", "--kms-key=alias/a", "--kms-read-keys=" + want}
		if !ok || err != nil || !slices.Equal(got, wantArgs) {
			t.Errorf("kms_read_keys=%s: %q, %v, %v; want %q", value, got, ok, err, wantArgs)
		}
	}
	for _, value := range []string{"", "alias/a::alias/b", "alias/a:", "arn:aws:kms:eu-west-1:111122223333", "alias/a:arn:aws"} {
		_, ok, err := mountHelperArgs([]string{"dynamodb:secrets", "/m", "-o", "kms_read_keys=" + value})
		if !ok || err == nil || !strings.Contains(err.Error(), "kms_read_keys") {
			t.Errorf("kms_read_keys=%s: ok %v, err %v; want a refusal naming the option", value, ok, err)
		}
	}
	// The option, and its form, are among those the refusal of an
	// unknown option lists.
	if _, _, err := mountHelperArgs([]string{"local:/d", "/m", "-o", "kms_read_key=x"}); err == nil || !strings.Contains(err.Error(), "kms_read_keys=k1:k2") {
		t.Errorf("the refusal of an unknown option does not list kms_read_keys=k1:k2: %v", err)
	}
}
