// Package deploy holds the container image and the Kubernetes manifests
// of secretfs (docs/CONTAINERS.md). Its test keeps them honest offline:
// the manifests parse, with no field Kubernetes would not know, and hold
// what the mount depends on (propagation, privileges, matching paths and
// owners); the binary the Dockerfile builds is static.
package deploy

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The subset of the Kubernetes API the manifests use. Decoding is strict,
// so a misspelt or misplaced field fails the test instead of being
// dropped on the way to the cluster.
type (
	object[Spec any] struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Metadata   metadata `yaml:"metadata"`
		Spec       Spec     `yaml:"spec"`
	}
	metadata struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	daemonSetSpec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxSurge       any `yaml:"maxSurge"` // an int or a percentage
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		Template struct {
			Metadata metadata `yaml:"metadata"`
			Spec     podSpec  `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		ServiceAccountName            string `yaml:"serviceAccountName"`
		HostNetwork                   bool   `yaml:"hostNetwork"`
		TerminationGracePeriodSeconds int    `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsUser    int  `yaml:"runAsUser"`
			RunAsGroup   int  `yaml:"runAsGroup"`
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []struct {
			Name     string `yaml:"name"`
			HostPath struct {
				Path string `yaml:"path"`
				Type string `yaml:"type"`
			} `yaml:"hostPath"`
		} `yaml:"volumes"`
	}
	container struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *struct {
			HTTPGet *struct {
				Host string `yaml:"host"`
				Path string `yaml:"path"`
				Port string `yaml:"port"`
			} `yaml:"httpGet"`
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
			PeriodSeconds    int `yaml:"periodSeconds"`
			FailureThreshold int `yaml:"failureThreshold"`
		} `yaml:"readinessProbe"`
		SecurityContext struct {
			Privileged               bool  `yaml:"privileged"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []volumeMount `yaml:"volumeMounts"`
	}
	volumeMount struct {
		Name             string `yaml:"name"`
		MountPath        string `yaml:"mountPath"`
		ReadOnly         bool   `yaml:"readOnly"`
		MountPropagation string `yaml:"mountPropagation"`
		SubPath          string `yaml:"subPath"`
	}
)

// load decodes every document of a manifest strictly, and returns the
// spec of each DaemonSet and Pod by kind.
func load(t *testing.T, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]any{}
	docs := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := docs.Decode(&doc); errors.Is(err, io.EOF) {
			return specs
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var kind struct {
			Kind string `yaml:"kind"`
		}
		if err := doc.Decode(&kind); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch kind.Kind {
		case "Namespace", "ServiceAccount":
			decodeStrictly[struct{}](t, file, &doc)
		case "DaemonSet":
			specs[kind.Kind] = decodeStrictly[daemonSetSpec](t, file, &doc)
		case "Pod":
			specs[kind.Kind] = decodeStrictly[podSpec](t, file, &doc)
		default:
			t.Fatalf("%s: a %s; the test knows no such kind", file, kind.Kind)
		}
	}
}

// decodeStrictly decodes doc into an object with a Spec, refusing any
// field that the types above do not name. (A yaml.Node cannot decode
// strictly itself: it goes through its text.)
func decodeStrictly[Spec any](t *testing.T, file string, doc *yaml.Node) *Spec {
	t.Helper()
	text, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	var o object[*Spec]
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return o.Spec
}

// mountOf returns the mount of the volume named volume in c.
func mountOf(t *testing.T, c container, volume string) volumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m
		}
	}
	t.Fatalf("container %s does not mount the volume %s", c.Name, volume)
	return volumeMount{}
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestTheDaemonSetMountsOnTheNodeAndTheConsumerSeesItReadOnly(t *testing.T) {
	ds := load(t, "daemonset.yaml")["DaemonSet"].(*daemonSetSpec).Template.Spec
	pod := load(t, "consumer-pod.yaml")["Pod"].(*podSpec)

	if len(ds.Containers) != 1 {
		t.Fatalf("the DaemonSet runs %d containers, want 1", len(ds.Containers))
	}
	daemon := ds.Containers[0]
	if !daemon.SecurityContext.Privileged {
		t.Error("the secretfs container is not privileged: it can neither mount(2) nor use Bidirectional propagation")
	}
	args := daemon.Args
	if len(args) < 2 || args[0] != "mount" {
		t.Fatalf("the secretfs container runs %q, want mount MOUNTPOINT ...", args)
	}
	for _, flag := range []string{"--read-only", "--allow-other"} {
		if !slices.Contains(args, flag) {
			t.Errorf("secretfs mount runs without %s", flag)
		}
	}
	// The mountpoint lies below the Bidirectional volume, so that the mount
	// reaches the node.
	hostDirs := map[string]string{}
	for _, v := range ds.Volumes {
		hostDirs[v.Name] = v.HostPath.Path
	}
	var nodeMountpoint string
	for _, m := range daemon.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, args[1]); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
			if m.MountPropagation != "Bidirectional" {
				t.Errorf("the volume %s that holds the mountpoint %s has propagation %q, want Bidirectional", m.Name, args[1], m.MountPropagation)
			}
			nodeMountpoint = path.Join(hostDirs[m.Name], rel)
		}
	}
	if nodeMountpoint == "" {
		t.Fatalf("the mountpoint %s is in no volume of the DaemonSet, below its mount path", args[1])
	}
	if hostDirs["fuse"] != "/dev/fuse" || mountOf(t, daemon, "fuse").MountPath != "/dev/fuse" {
		t.Error("the DaemonSet does not pass the node's /dev/fuse in")
	}
	// Ready while this pod's secretfs serves the mountpoint.
	probe := daemon.ReadinessProbe
	if probe == nil || probe.Exec == nil || !slices.Equal(probe.Exec.Command, []string{imageBinary, "status", args[1]}) {
		t.Errorf("the secretfs container's readiness probe is not %s status %s", imageBinary, args[1])
	}

	// The consumer mounts the node directory that holds the mountpoint,
	// read-only, with HostToContainer propagation and no subPath, and runs
	// as the mount's owner.
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" {
				t.Errorf("container %s mounts %s with subPath %s: it would never see a remount", c.Name, m.Name, m.SubPath)
			}
		}
	}
	if len(pod.Volumes) != 1 {
		t.Fatalf("the consumer has %d volumes, want 1", len(pod.Volumes))
	}
	vol := pod.Volumes[0]
	if path.Dir(nodeMountpoint) != vol.HostPath.Path {
		t.Errorf("the consumer mounts the node's %s; secretfs mounts at %s: want its directory, %s", vol.HostPath.Path, nodeMountpoint, path.Dir(nodeMountpoint))
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		m := mountOf(t, c, vol.Name)
		if !m.ReadOnly || m.MountPropagation != "HostToContainer" {
			t.Errorf("container %s mounts the secrets with readOnly %v, propagation %q; want read-only, HostToContainer", c.Name, m.ReadOnly, m.MountPropagation)
		}
		if want := path.Join(m.MountPath, path.Base(nodeMountpoint), strings.Split(flagValue(args, "apps"), ",")[0]); !strings.Contains(strings.Join(c.Command, " "), want) {
			t.Errorf("container %s does not look in %s", c.Name, want)
		}
	}
	if uid, gid := flagValue(args, "uid"), flagValue(args, "gid"); uid != strconv.Itoa(pod.SecurityContext.RunAsUser) || gid != strconv.Itoa(pod.SecurityContext.RunAsGroup) {
		t.Errorf("the consumer runs as %d:%d, the secrets belong to %s:%s", pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsGroup, uid, gid)
	}
}

// imageBinary is where deploy/Dockerfile puts secretfs.
const imageBinary = "/usr/local/bin/secretfs"

// The metrics stay on the node: /metrics counts what the mount answered by
// errno, which tells whoever can write the store how its forgeries fared.
// --metrics-addr listens on a loopback address, the node's (hostNetwork),
// where a scraper on the node reaches it. A consumer pod never shares the
// node's network, where the metrics are.
func TestTheDaemonSetServesMetricsOnTheNodesLoopbackOnly(t *testing.T) {
	ds := load(t, "daemonset.yaml")["DaemonSet"].(*daemonSetSpec).Template.Spec
	pod := load(t, "consumer-pod.yaml")["Pod"].(*podSpec)
	daemon := ds.Containers[0]
	addr := flagValue(daemon.Args, "metrics-addr")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--metrics-addr=%q: %v", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("--metrics-addr=%s listens beyond loopback", addr)
	}
	if !ds.HostNetwork {
		t.Error("the DaemonSet's pod has a network of its own: no scraper on the node reaches its loopback")
	}
	if pod.HostNetwork {
		t.Error("the consumer pod shares the node's network, where the metrics are")
	}
}

// An upgrade interrupts no consumer: the DaemonSet starts the new pod on a
// node before it deletes the old one there (maxSurge 1, maxUnavailable 0),
// and the new pod's secretfs takes the mount over (--replace) and waits
// for SIGTERM once its own is taken over in turn (--wait-after-drain:
// a container that exited would be started again and take the mount
// back). The SIGTERM the old pod gets once the new one is ready does not
// end its drain (--drain-through-sigterm): consumers' descriptors and
// subPath binds keep reading until released, within --drain-timeout and
// the grace period that outlasts it. The pod declares no port: with hostNetwork it would be the
// node's, and the new pod could not be scheduled beside the old one. The
// readiness probe (above) makes the new pod ready only once it serves the
// mountpoint, so the old one is deleted only then.
func TestTheDaemonSetUpgradesBySurgeAndReplacement(t *testing.T) {
	set := load(t, "daemonset.yaml")["DaemonSet"].(*daemonSetSpec)
	u := set.UpdateStrategy
	if u.Type != "RollingUpdate" || u.RollingUpdate.MaxSurge != 1 || u.RollingUpdate.MaxUnavailable != 0 {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxSurge 1 and maxUnavailable 0", u)
	}
	daemon := set.Template.Spec.Containers[0]
	for _, flag := range []string{"--replace", "--wait-after-drain", "--drain-through-sigterm"} {
		if !slices.Contains(daemon.Args, flag) {
			t.Errorf("secretfs mount runs without %s", flag)
		}
	}
	// The old pod is sent SIGTERM as soon as the new one is ready, and
	// drains on through it; --drain-timeout bounds the drain, and the
	// grace period must outlast it, or SIGKILL would end every drain
	// that --drain-timeout was meant to allow.
	drain, err := time.ParseDuration(flagValue(daemon.Args, "drain-timeout"))
	if err != nil || drain <= 0 {
		t.Errorf("--drain-timeout=%q (%v): want a positive duration, which bounds the drain of a replaced pod", flagValue(daemon.Args, "drain-timeout"), err)
	}
	if grace := time.Duration(set.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %s does not outlast --drain-timeout %s: SIGKILL would cut drains short", grace, drain)
	}
	if len(daemon.Ports) != 0 {
		t.Errorf("the secretfs container declares ports %+v: with hostNetwork they are the node's, and the new pod of an upgrade could not be scheduled beside the old one", daemon.Ports)
	}
}

// The Dockerfile builds with CGO_ENABLED=0 for a base image without a C
// library: such a build of secretfs must be static (no dynamic loader, no
// shared library), which a cgo dependency would break.
func TestTheImageBinaryIsStatic(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dockerfile, []byte("CGO_ENABLED=0 go build")) {
		t.Fatal("the Dockerfile does not build with CGO_ENABLED=0")
	}
	bin := filepath.Join(t.TempDir(), "secretfs")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/secretfs")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a dynamic loader (PT_INTERP)")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %q (%v)", libs, err)
	}
}
