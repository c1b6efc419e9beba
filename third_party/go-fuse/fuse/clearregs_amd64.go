// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package fuse

import "golang.org/x/sys/cpu"

// secretfs: copying a request moves its bytes through vector registers
// (runtime.memmove keeps the last 64 bytes of a 65- to 128-byte copy in
// X4-X7, all of a 129- to 256-byte one in X0-X15), and they stay there
// until other code happens to use those registers, which for X4-X15 can
// be minutes. A signal delivered to the thread meanwhile (Go's SIGURG
// preemption, every GC) makes the kernel save them in the signal frame
// on the thread's signal stack, in the Go heap, where they stay until
// the next signal to that thread: the request's image at an odd address
// that secretfs's memory test kept finding. clearVectorRegisters zeroes
// them once the copy is made.
func clearVectorRegisters() {
	if useVZEROALL {
		clearYMM()
	} else {
		clearXMM()
	}
}

var useVZEROALL = cpu.X86.HasAVX

// clearXMM zeroes X0-X15.
//
//go:noescape
func clearXMM()

// clearYMM zeroes Y0-Y15 (VZEROALL), and with them X0-X15.
//
//go:noescape
func clearYMM()
