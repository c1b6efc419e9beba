package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// mount(8) and fstab: `mount -t fuse.secretfs SOURCE MOUNTPOINT -o OPTIONS`
// makes fuse3's mount.fuse3 run `secretfs SOURCE MOUNTPOINT -o OPTIONS`
// and wait for it to return. mountHelperArgs translates that form into
// `secretfs mount --daemon MOUNTPOINT --flag=value...`.

// mountHelperValues are the options that take a value: the mount flags
// and backend flags, with '-' written '_'.
var mountHelperValues = map[string]bool{
	"uid": true, "gid": true, "file_mode": true, "dir_mode": true, "ttl": true, "cache_idle": true,
	"stale_if_error": true, "cache_size": true, "kms_key": true, "region": true, "rsa_key": true,
	"timeout": true, "log_file": true, "log_level": true, "log_format": true, "metrics_addr": true,
	"audit_log": true, "apps": true, "format": true, "kms_read_keys": true,
}

// mountHelperIgnored are the options mount(8), fstab and systemd use
// themselves, or that every mount accepts: they are not secretfs's.
var mountHelperIgnored = map[string]bool{
	"defaults": true, "rw": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "nodev": true, "nosuid": true, "dev": true, "suid": true,
	"exec": true, "noexec": true, "atime": true, "noatime": true, "relatime": true,
}

// mountHelperArgs returns the command line for args (os.Args[1:]) when
// they are in the mount(8) form, SOURCE MOUNTPOINT [-o OPTIONS]..., with
// SOURCE local:DATA_DIR or dynamodb:TABLE; ok is false for any other form.
func mountHelperArgs(args []string) (out []string, ok bool, err error) {
	if len(args) < 2 {
		return nil, false, nil
	}
	scheme, where, found := strings.Cut(args[0], ":")
	if !found || (scheme != "local" && scheme != "dynamodb") {
		return nil, false, nil
	}
	if where == "" {
		return nil, true, fmt.Errorf("%s: want local:DATA_DIR or dynamodb:TABLE", args[0])
	}
	out = []string{"mount", "--daemon", args[1], "--backend", scheme}
	if scheme == "local" {
		out = append(out, "--data-dir", where)
	} else {
		out = append(out, "--table", where)
	}
	rest := args[2:]
	for len(rest) > 0 {
		switch {
		case rest[0] == "-o" && len(rest) > 1:
			opts, err := mountHelperOptions(rest[1])
			if err != nil {
				return nil, true, err
			}
			out = append(out, opts...)
			rest = rest[2:]
		case strings.HasPrefix(rest[0], "-o") && len(rest[0]) > 2:
			opts, err := mountHelperOptions(rest[0][2:])
			if err != nil {
				return nil, true, err
			}
			out = append(out, opts...)
			rest = rest[1:]
		case rest[0] == "-n" || rest[0] == "-v" || rest[0] == "-s":
			rest = rest[1:] // mount(8)'s own: no mtab, verbose, sloppy
		default:
			return nil, true, fmt.Errorf("%q: the mount(8) form is secretfs SOURCE MOUNTPOINT -o OPTIONS", rest[0])
		}
	}
	return out, true, nil
}

// mountHelperOptions translates one comma-separated -o list.
func mountHelperOptions(list string) ([]string, error) {
	var out []string
	for _, opt := range strings.Split(list, ",") {
		name, value, hasValue := strings.Cut(opt, "=")
		switch {
		case opt == "":
		case mountHelperIgnored[opt] || strings.HasPrefix(opt, "x-systemd.") || strings.HasPrefix(opt, "x-"):
		case opt == "ro":
			out = append(out, "--read-only")
		case opt == "allow_other":
			out = append(out, "--allow-other")
		case mountHelperValues[name] && hasValue:
			// Commas separate mount options, so lists use colons.
			switch name {
			case "apps":
				value = strings.ReplaceAll(value, ":", ",")
			case "kms_read_keys":
				keys, err := splitKeyList(value)
				if err != nil {
					return nil, err
				}
				value = strings.Join(keys, ",")
			}
			out = append(out, "--"+strings.ReplaceAll(name, "_", "-")+"="+value)
		case mountHelperValues[name]:
			return nil, fmt.Errorf("mount option %q needs a value: %s=...", name, name)
		default:
			return nil, fmt.Errorf("unknown mount option %q (secretfs takes ro, allow_other, %s; and ignores mount(8)'s own, such as defaults, noauto, nofail, _netdev, x-systemd.*)",
				opt, strings.Join(valueOptionNames(), ", "))
		}
	}
	return out, nil
}

// valueOptionNames lists the options that take a value, for messages.
func valueOptionNames() []string {
	names := slices.Sorted(maps.Keys(mountHelperValues))
	for i, n := range names {
		names[i] = n + "="
		switch n {
		case "apps":
			names[i] = "apps=a:b:c"
		case "kms_read_keys":
			names[i] = "kms_read_keys=k1:k2"
		}
	}
	return names
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
