package main

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// helperArgs translates args in the mount(8) form with the options of
// the secretfs command.
func helperArgs(args []string) ([]string, bool, error) {
	return mountHelperArgs(newRootCommand(), args)
}

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
		{[]string{"local:/d", "/m", "-o", "read_only,log_level=debug", "-v", "-oaudit_log=-,cache_size=5"},
			[]string{"mount", "--daemon", "/m", "--backend", "local", "--data-dir", "/d",
				"--read-only", "--log-level=debug", "--audit-log=-", "--cache-size=5"}},
	} {
		got, ok, err := helperArgs(tc.args)
		if !ok || err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, %v, %v; want %q", tc.args, got, ok, err, tc.want)
		}
	}
}

func TestMountHelperRefusesUnknownOptionsAndLeavesVerbsAlone(t *testing.T) {
	for _, args := range [][]string{
		{"local:/d", "/m", "-o", "bogus"},
		{"local:/d", "/m", "-o", "ttl"},
		{"local:/d", "/m", "-o", "allow_other=1"},
		{"local:/d", "/m", "-o", "daemon"},
		{"local:/d", "/m", "-o", "data_dir=/e"},
		{"local:", "/m"},
		{"local:/d", "/m", "extra"},
	} {
		if _, ok, err := helperArgs(args); !ok || err == nil {
			t.Errorf("%q: ok %v, err %v; want a refusal", args, ok, err)
		}
	}
	_, _, err := helperArgs([]string{"local:/d", "/m", "-o", "bogus=1"})
	if err == nil || !strings.Contains(err.Error(), `unknown mount option "bogus=1"`) || !strings.Contains(err.Error(), "apps=a:b:c") {
		t.Errorf("message %v", err)
	}
	for _, args := range [][]string{{"mount", "/m"}, {"get", "app/s"}, {"ls"}, {"/m", "local:/d"}} {
		if _, ok, _ := helperArgs(args); ok {
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
		got, ok, err := helperArgs(args)
		wantArgs := []string{"mount", "--daemon", "/run/secrets", "--backend", "dynamodb", "--table", "secrets",
			"--read-only", "--kms-key=alias/a", "--kms-read-keys=" + want}
		if !ok || err != nil || !slices.Equal(got, wantArgs) {
			t.Errorf("kms_read_keys=%s: %q, %v, %v; want %q", value, got, ok, err, wantArgs)
		}
	}
	for _, value := range []string{"", "alias/a::alias/b", "alias/a:", "arn:aws:kms:eu-west-1:111122223333", "alias/a:arn:aws"} {
		_, ok, err := helperArgs([]string{"dynamodb:secrets", "/m", "-o", "kms_read_keys=" + value})
		if !ok || err == nil || !strings.Contains(err.Error(), "kms_read_keys") {
			t.Errorf("kms_read_keys=%s: ok %v, err %v; want a refusal naming the option", value, ok, err)
		}
	}
	// The option, and its form, are among those the refusal of an
	// unknown option lists.
	if _, _, err := helperArgs([]string{"local:/d", "/m", "-o", "kms_read_key=x"}); err == nil || !strings.Contains(err.Error(), "kms_read_keys=k1:k2") {
		t.Errorf("the refusal of an unknown option does not list kms_read_keys=k1:k2: %v", err)
	}
}

// Every flag of `secretfs mount`, its own and the shared ones, is a
// mount(8) option that sets the flag as the flag itself does, unless
// notMountOptions excludes it; the excluded ones are exactly these, and
// each names a flag.
func TestEveryMountFlagIsAMountOptionThatSetsItUnlessExcluded(t *testing.T) {
	flags := mountVerbFlags(newRootCommand())
	excluded := slices.Sorted(maps.Keys(notMountOptions))
	if want := []string{"backend", "daemon", "data-dir", "help", "table"}; !slices.Equal(excluded, want) {
		t.Errorf("the flags with no mount(8) option are %q, want %q", excluded, want)
	}
	for _, name := range excluded {
		if flags[name] == nil {
			t.Errorf("notMountOptions names --%s, which mount does not take", name)
		}
	}
	for alias, name := range mountOptionAliases {
		if flags[name] == nil {
			t.Errorf("the alias %s stands for --%s, which mount does not take", alias, name)
		}
	}
	options := 0
	for name, f := range flags {
		if _, ok := notMountOptions[name]; ok {
			continue
		}
		options++
		t.Run(name, func(t *testing.T) {
			v := envValue(t, f)
			opt := optionFor(t, f, v)
			args, ok, err := helperArgs([]string{"local:/d", "/m", "-o", opt})
			if !ok || err != nil {
				t.Fatalf("-o %s: ok %v, err %v", opt, ok, err)
			}
			got := mountFlagAfter(t, args[1:], name)
			if want := mountFlagAfter(t, []string{"--" + name + "=" + v}, name); got.Value.String() != want.Value.String() || !got.Changed {
				t.Errorf("-o %s sets --%s to %q (changed: %v); --%s=%s sets it to %q", opt, name, got.Value, got.Changed, name, v, want.Value)
			}
		})
	}
	// Guard against a walk that finds nothing: mount's own flags and the
	// shared ones, less those excluded.
	if options < 14+11-5 {
		t.Errorf("only %d options", options)
	}
}

// optionFor writes --name=v as a mount(8) option.
func optionFor(t *testing.T, f *pflag.Flag, v string) string {
	t.Helper()
	opt := strings.ReplaceAll(f.Name, "-", "_")
	switch f.Value.Type() {
	case "bool":
		if v != "true" {
			t.Fatalf("--%s defaults to true: a bare word cannot turn it off", f.Name)
		}
		return opt
	case "stringSlice":
		return opt + "=" + strings.ReplaceAll(v, ",", ":")
	}
	return opt + "=" + v
}

// mountFlagAfter returns flag name of a new mount command once args are
// parsed.
func mountFlagAfter(t *testing.T, args []string, name string) *pflag.Flag {
	t.Helper()
	cmd, _, err := newRootCommand().Find([]string{"mount"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return cmd.Flags().Lookup(name)
}

// ro, mount(8)'s own word, and read_only, derived from the flag, are one
// option; a boolean option takes no value.
func TestMountHelperROAndReadOnlyAreOneOptionAndBooleansTakeNoValue(t *testing.T) {
	for _, opt := range []string{"ro", "read_only"} {
		got, _, err := helperArgs([]string{"local:/d", "/m", "-o", opt})
		if err != nil || got[len(got)-1] != "--read-only" {
			t.Errorf("-o %s: %q, %v", opt, got, err)
		}
	}
	_, _, err := helperArgs([]string{"local:/d", "/m", "-o", "allow_other=true"})
	if err == nil || err.Error() != `mount option "allow_other=true" takes no value: write allow_other alone` {
		t.Errorf("allow_other=true: %v", err)
	}
}

// main translates the mount(8) form before cobra sees it: a refused
// option ends the command with status 1 and the reason.
func TestMainRefusesAnUnknownMountOptionWithStatusOne(t *testing.T) {
	_, stderr, status := runMain(t, nil, "local:/d", "/m", "-o", "ro,bogus")
	if status != 1 || !strings.HasPrefix(string(stderr), `secretfs: unknown mount option "bogus" (secretfs takes allow_other, drain_through_sigterm, read_only, ro, `) {
		t.Errorf("status %d, stderr %q", status, stderr)
	}
}

// A SOURCE of another scheme (a typo in fstab: loacl:/var/lib/secretfs)
// is refused naming the two forms, not as an unknown command; a first
// argument that is a flag (whose value may hold a colon) is no SOURCE.
func TestMountHelperRefusesASourceOfAnotherSchemeNamingTheForms(t *testing.T) {
	for _, args := range [][]string{
		{"loacl:/var/lib/secretfs", "/run/secrets", "-o", "ro"},
		{"dynamo:secrets", "/srv/secrets"},
		{"s3:bucket", "/m"},
		{"/var/lib/secretfs", "/m", "-o", "ro"}, // a bare data directory
	} {
		_, ok, err := helperArgs(args)
		if !ok || err == nil || !strings.Contains(err.Error(), args[0]+": want local:DATA_DIR or dynamodb:TABLE") {
			t.Errorf("%q: ok %v, err %v; want it refused naming local:DATA_DIR and dynamodb:TABLE", args, ok, err)
		}
	}
	for _, args := range [][]string{
		{"--kms-key=arn:aws:kms:eu-west-1:111122223333:key/x", "ls"},
		{"--data-dir=/a:b", "get", "app/s"},
		{"-h", "x:y"},
	} {
		if _, ok, err := helperArgs(args); ok || err != nil {
			t.Errorf("%q taken for the mount(8) form: ok %v, err %v", args, ok, err)
		}
	}
	_, stderr, status := runMain(t, nil, "loacl:/d", "/m", "-o", "ro")
	if status != 1 || string(stderr) != "secretfs: loacl:/d: want local:DATA_DIR or dynamodb:TABLE\n" {
		t.Errorf("secretfs loacl:/d /m -o ro: status %d, stderr %q; want the forms named", status, stderr)
	}
}
