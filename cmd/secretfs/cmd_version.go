package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=..."; else
// the module version from the build info is used.
var version = ""

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  argCount(0, 0),
		Run: func(cmd *cobra.Command, args []string) {
			info, _ := debug.ReadBuildInfo() // nil without build info
			fmt.Fprintln(cmd.OutOrStdout(), versionLine(version, info))
		},
	}
}

// versionLine is what `secretfs version` prints: the version (see
// buildVersion), then the Go version. info is nil for a binary built
// without build info.
func versionLine(stamped string, info *debug.BuildInfo) string {
	goVersion := "unknown"
	if info != nil {
		goVersion = info.GoVersion
	}
	return fmt.Sprintf("secretfs %s %s", buildVersion(stamped, info), goVersion)
}

// buildVersion is the version set at build time, else the module version
// and the VCS revision it was built from.
func buildVersion(stamped string, info *debug.BuildInfo) string {
	v := stamped
	if info != nil && v == "" {
		v = info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	if v == "" {
		v = "(unknown)"
	}
	return v
}
