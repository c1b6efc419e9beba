package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// mount(8) and fstab: `mount -t fuse.secretfs SOURCE MOUNTPOINT -o OPTIONS`
// makes fuse3's mount.fuse3 run `secretfs SOURCE MOUNTPOINT -o OPTIONS`
// and wait for it to return. mountHelperArgs translates that form into
// `secretfs mount --daemon MOUNTPOINT --flag=value...`.
//
// The options are derived from the flags of `secretfs mount`, its own and
// the shared ones, so that no flag is forgotten: --some-flag is
// some_flag=VALUE; a boolean flag is a bare word (allow_other,
// read_only, and mount(8)'s ro); a list flag takes its items separated by
// colons (apps=a:b:c), since commas separate mount options. The flags
// that are not options are listed in notMountOptions, with the reason.

// notMountOptions are the flags of `secretfs mount` that are no mount(8)
// option, and why.
var notMountOptions = map[string]string{
	"daemon":   "implied: the mount(8) form always daemonizes, since mount(8) waits for it to return",
	"backend":  "SOURCE names it: local:DATA_DIR or dynamodb:TABLE",
	"data-dir": "SOURCE names it: local:DATA_DIR",
	"table":    "SOURCE names it: dynamodb:TABLE",
	"help":     "it prints the help and mounts nothing",
}

// mountOptionAliases are mount(8)'s own words for flags of ours.
var mountOptionAliases = map[string]string{"ro": "read-only"}

// listSplitters split the value of a list option where splitting at each
// colon would not do: a KMS key's ARN holds colons of its own.
var listSplitters = map[string]func(string) ([]string, error){"kms-read-keys": splitKeyList}

// listExamples show how a list option is written, in the refusal of an
// unknown option; other list options show name=a:b.
var listExamples = map[string]string{"apps": "a:b:c", "kms-read-keys": "k1:k2"}

// mountHelperIgnored are the options mount(8), fstab and systemd use
// themselves, or that every mount accepts: they are not secretfs's.
// So are x-* (x-systemd.automount...).
var mountHelperIgnored = map[string]bool{
	"defaults": true, "rw": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "nodev": true, "nosuid": true, "dev": true, "suid": true,
	"exec": true, "noexec": true, "atime": true, "noatime": true, "relatime": true,
}

// mountHelperArgs returns the command line for args (os.Args[1:]) when
// they are in the mount(8) form, SOURCE MOUNTPOINT [-o OPTIONS]..., with
// SOURCE local:DATA_DIR or dynamodb:TABLE; ok is false for any other form.
// root is the secretfs command: its mount verb's flags are the options.
func mountHelperArgs(root *cobra.Command, args []string) (out []string, ok bool, err error) {
	if len(args) < 2 {
		return nil, false, nil
	}
	if strings.HasPrefix(args[0], "/") && !strings.Contains(args[0], ":") && !strings.Contains(args[1], ":") {
		// A path, which no verb is, where SOURCE goes (mount -t
		// fuse.secretfs /var/lib/secretfs MNT): the scheme is missing.
		return nil, true, fmt.Errorf("%s: want local:DATA_DIR or dynamodb:TABLE (local:%s, for a data directory)", args[0], args[0])
	}
	source, ok, err := sourceFlags(args[0])
	if !ok || err != nil {
		return nil, ok, err
	}
	flags, err := mountOptionsOf(root).flags(args[2:])
	if err != nil {
		return nil, true, err
	}
	out = append([]string{"mount", "--daemon", args[1]}, source...)
	return append(out, flags...), true, nil
}

// sourceFlags returns the flags SOURCE stands for: local:DATA_DIR or
// dynamodb:TABLE. ok is false when source is no SOURCE: it holds no
// colon, or it is a flag (whose value may hold one). No verb holds a
// colon, so one of another scheme (a typo in fstab, loacl:DIR) is a
// SOURCE, refused naming the two forms rather than as an unknown command.
func sourceFlags(source string) (flags []string, ok bool, err error) {
	scheme, where, found := strings.Cut(source, ":")
	if !found || strings.HasPrefix(source, "-") {
		return nil, false, nil
	}
	if where == "" || (scheme != "local" && scheme != "dynamodb") {
		return nil, true, fmt.Errorf("%s: want local:DATA_DIR or dynamodb:TABLE", source)
	}
	if scheme == "local" {
		return []string{"--backend", scheme, "--data-dir", where}, true, nil
	}
	return []string{"--backend", scheme, "--table", where}, true, nil
}

// mountOptions are the mount(8) options, by name, each with the flag it
// sets.
type mountOptions map[string]*pflag.Flag

// mountOptionsOf derives the options from the flags of root's mount
// verb: every flag, its own or shared, but those in notMountOptions,
// under its name with '-' written '_', and the aliases.
func mountOptionsOf(root *cobra.Command) mountOptions {
	flags := mountVerbFlags(root)
	opts := mountOptions{}
	for _, f := range flags {
		if _, excluded := notMountOptions[f.Name]; !excluded {
			opts[strings.ReplaceAll(f.Name, "-", "_")] = f
		}
	}
	for alias, name := range mountOptionAliases {
		if f := flags[name]; f != nil {
			opts[alias] = f
		}
	}
	return opts
}

// mountVerbFlags returns every flag of root's mount verb, its own and
// those it inherits, by name.
func mountVerbFlags(root *cobra.Command) map[string]*pflag.Flag {
	flags := map[string]*pflag.Flag{}
	add := func(f *pflag.Flag) { flags[f.Name] = f }
	for _, cmd := range root.Commands() {
		if cmd.Name() == "mount" {
			cmd.InitDefaultHelpFlag() // as Execute would; it is in notMountOptions
			cmd.LocalFlags().VisitAll(add)
			cmd.InheritedFlags().VisitAll(add)
		}
	}
	return flags
}

// flags translates what follows MOUNTPOINT: any number of -o OPTIONS (or
// -oOPTIONS), and mount(8)'s own -n, -v and -s, which it ignores.
func (o mountOptions) flags(rest []string) ([]string, error) {
	var out []string
	for len(rest) > 0 {
		var list string
		switch {
		case rest[0] == "-o" && len(rest) > 1:
			list, rest = rest[1], rest[2:]
		case strings.HasPrefix(rest[0], "-o") && len(rest[0]) > 2:
			list, rest = rest[0][2:], rest[1:]
		case rest[0] == "-n" || rest[0] == "-v" || rest[0] == "-s":
			rest = rest[1:] // mount(8)'s own: no mtab, verbose, sloppy
			continue
		default:
			return nil, fmt.Errorf("%q: the mount(8) form is secretfs SOURCE MOUNTPOINT -o OPTIONS", rest[0])
		}
		for _, opt := range strings.Split(list, ",") {
			flag, err := o.flag(opt)
			if err != nil {
				return nil, err
			}
			if flag != "" {
				out = append(out, flag)
			}
		}
	}
	return out, nil
}

// flag returns the flag one option stands for: --name for a boolean,
// else --name=value; "" for an option that is mount(8)'s, not ours.
func (o mountOptions) flag(opt string) (string, error) {
	name, value, hasValue := strings.Cut(opt, "=")
	f := o[name]
	switch {
	case opt == "" || mountHelperIgnored[opt] || strings.HasPrefix(opt, "x-"):
		return "", nil
	case f == nil:
		return "", fmt.Errorf("unknown mount option %q (secretfs takes %s; and ignores mount(8)'s own, such as defaults, noauto, nofail, _netdev, x-systemd.*)",
			opt, strings.Join(o.names(), ", "))
	case isBoolFlag(f) && hasValue:
		return "", fmt.Errorf("mount option %q takes no value: write %s alone", opt, name)
	case isBoolFlag(f):
		return "--" + f.Name, nil
	case !hasValue:
		return "", fmt.Errorf("mount option %q needs a value: %s=...", name, name)
	}
	value, err := flagValue(f, value)
	if err != nil {
		return "", err
	}
	return "--" + f.Name + "=" + value, nil
}

// flagValue is the flag's value for an option's: for a list, its items
// separated by commas instead of colons.
func flagValue(f *pflag.Flag, value string) (string, error) {
	if !isListFlag(f) {
		return value, nil
	}
	split := listSplitters[f.Name]
	if split == nil {
		return strings.ReplaceAll(value, ":", ","), nil
	}
	items, err := split(value)
	if err != nil {
		return "", err
	}
	return strings.Join(items, ","), nil
}

func isBoolFlag(f *pflag.Flag) bool { return f.Value.Type() == "bool" }

func isListFlag(f *pflag.Flag) bool {
	_, ok := f.Value.(pflag.SliceValue)
	return ok
}

// names lists the options, for messages: the bare words, then those that
// take a value.
func (o mountOptions) names() []string {
	var words, values []string
	for _, name := range slices.Sorted(maps.Keys(o)) {
		f := o[name]
		switch {
		case isBoolFlag(f):
			words = append(words, name)
		case isListFlag(f):
			example, ok := listExamples[f.Name]
			if !ok {
				example = "a:b"
			}
			values = append(values, name+"="+example)
		default:
			values = append(values, name+"=")
		}
	}
	return append(words, values...)
}

// arnFields is how many colon-separated fields an ARN has:
// arn:partition:service:region:account:resource. A KMS key's resource
// (key/ID, alias/NAME) holds no colon, nor do key ids and alias names.
const arnFields = 6

// splitKeyList splits the kms_read_keys option, KMS keys separated by
// colons, keeping each ARN's own colons: a field "arn" starts an ARN made
// of it and the five fields after it.
func splitKeyList(value string) ([]string, error) {
	fields := strings.Split(value, ":")
	var keys []string
	for len(fields) > 0 {
		n := 1
		if fields[0] == "arn" {
			n = arnFields
		}
		if len(fields) < n {
			return nil, fmt.Errorf("mount option kms_read_keys=%s: %q is not a whole ARN (arn:partition:kms:region:account:key/ID)", value, strings.Join(fields, ":"))
		}
		key := strings.Join(fields[:n], ":")
		if key == "" {
			return nil, fmt.Errorf("mount option kms_read_keys=%s: an empty key (want k1:k2)", value)
		}
		keys = append(keys, key)
		fields = fields[n:]
	}
	return keys, nil
}
