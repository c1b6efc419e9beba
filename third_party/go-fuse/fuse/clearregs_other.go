// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

//go:build !amd64

package fuse

// clearVectorRegisters is a no-op here (secretfs: see clearregs_amd64.go;
// only amd64 is done).
func clearVectorRegisters() {}
