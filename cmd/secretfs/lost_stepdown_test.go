package main

import (
	"testing"
	"time"
)

// fakeStepDownView plays a mount point after a step-down request got no
// reply: the predecessor's mount leaves the top after unmountAfter looks
// (never if negative); its process ends after gone looks (never if
// negative); a detach works unless detachFails.
type fakeStepDownView struct {
	unmountAfter, gone int
	detachFails        bool
	looks, detaches    int
	detached           bool
}

func (f *fakeStepDownView) onTop() bool {
	f.looks++
	return f.detached || (f.unmountAfter >= 0 && f.looks > f.unmountAfter)
}

func (f *fakeStepDownView) predecessorAlive() bool { return f.gone < 0 || f.looks < f.gone }

func (f *fakeStepDownView) detachPredecessor() {
	f.detaches++
	f.detached = !f.detachFails
}

// A step-down whose reply was lost is settled by the mount point, not by
// the lost reply: a predecessor that unmounts (a signal ended it) leaves
// this mount serving; one that died on top is detached; one still alive
// and on top at the limit keeps serving, and the successor withdraws.
func TestALostStepDownReplyIsSettledByWhatTheMountPointShows(t *testing.T) {
	for _, c := range []struct {
		name     string
		view     fakeStepDownView
		served   bool
		detaches int
	}{
		{"the predecessor unmounts as it ends", fakeStepDownView{unmountAfter: 3, gone: -1}, true, 0},
		{"the predecessor died with its mount on top", fakeStepDownView{unmountAfter: -1, gone: 2}, true, 1},
		{"the predecessor died, and its mount cannot be detached", fakeStepDownView{unmountAfter: -1, gone: 2, detachFails: true}, false, 1},
		{"the predecessor lives on, on top", fakeStepDownView{unmountAfter: -1, gone: -1}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := c.view
			if got := afterLostStepDown(&v, 200*time.Millisecond); got != c.served {
				t.Errorf("served: %v, want %v (after %d looks)", got, c.served, v.looks)
			}
			if v.detaches != c.detaches {
				t.Errorf("%d detaches, want %d", v.detaches, c.detaches)
			}
		})
	}
}
