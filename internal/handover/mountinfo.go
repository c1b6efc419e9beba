package handover

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountInfo is one line of /proc/PID/mountinfo (proc(5)).
type MountInfo struct {
	ID, Parent   int
	Dev          uint64 // the file system's device number, as stat's st_dev
	Root         string // the directory of the file system mounted here
	Point        string // the mount point
	FSType       string // such as fuse.secretfs
	Source       string
	SuperOptions string // such as ro,user_id=0,group_id=0,allow_other
}

// Option returns the value of the file system option name (user_id=0
// gives "0", true) and whether it is set.
func (m MountInfo) Option(name string) (string, bool) {
	for _, o := range strings.Split(m.SuperOptions, ",") {
		if o == name {
			return "", true
		}
		if v, ok := strings.CutPrefix(o, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// DevString is Dev as mountinfo writes it: major:minor.
func (m MountInfo) DevString() string { return devString(m.Dev) }

func devString(dev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)) }

// ReadMountInfo reads the mount table of a mountinfo file, such as
// /proc/self/mountinfo.
func ReadMountInfo(path string) ([]MountInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseMountInfo(string(data))
}

func parseMountInfo(data string) ([]MountInfo, error) {
	var all []MountInfo
	for _, line := range strings.Split(data, "\n") {
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %q: %w", line, err)
		}
		all = append(all, m)
	}
	return all, nil
}

// parseMountLine parses "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
// /dev/root rw,errors=continue": id, parent, major:minor, root, mount
// point, mount options, optional fields ended by "-", type, source,
// super options.
func parseMountLine(line string) (MountInfo, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return MountInfo{}, fmt.Errorf("no separator or too few fields")
	}
	var m MountInfo
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return m, err
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return m, err
	}
	major, minor, ok := strings.Cut(f[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q", f[2])
	}
	maj, err1 := strconv.ParseUint(major, 10, 32)
	mnr, err2 := strconv.ParseUint(minor, 10, 32)
	if err1 != nil || err2 != nil {
		return m, fmt.Errorf("device %q", f[2])
	}
	m.Dev = unix.Mkdev(uint32(maj), uint32(mnr))
	m.Root, m.Point = unescapeOctal(f[3]), unescapeOctal(f[4])
	m.FSType, m.Source = unescapeOctal(f[sep+1]), unescapeOctal(f[sep+2])
	if len(f) > sep+3 {
		m.SuperOptions = unescapeOctal(f[sep+3])
	}
	return m, nil
}

// unescapeOctal undoes the kernel's escaping of space, tab, newline and
// backslash in mountinfo (\040, \011, \012, \134).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TopAt returns the mount a lookup of point reaches (the one at point
// that no other mount at point is mounted on), and whether there is one.
func TopAt(all []MountInfo, point string) (MountInfo, bool) {
	var at []MountInfo
	for _, m := range all {
		if m.Point == point {
			at = append(at, m)
		}
	}
	for _, m := range at {
		covered := false
		for _, above := range at {
			if above.Parent == m.ID {
				covered = true
				break
			}
		}
		if !covered {
			return m, true
		}
	}
	return MountInfo{}, false
}

// Beneath returns the mount that m is mounted on, if it is at the same
// mount point: the one a MOVE_MOUNT_BENEATH put under m.
func Beneath(all []MountInfo, m MountInfo) (MountInfo, bool) {
	for _, p := range all {
		if p.ID == m.Parent && p.Point == m.Point {
			return p, true
		}
	}
	return MountInfo{}, false
}
