package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/crypto/cryptotest"
	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/secrets"
	"github.com/secretfs/secretfs/store"
)

// A write that another process's write transaction keeps out, past the
// busy timeout or until the call's deadline, is not made, and says so:
// the database was locked, and nothing was written (store.ErrNotWritten).
// The Keeper, the mount's and the admin verbs' way to the store, then
// neither asks the store again nor calls the outcome unknown ("the store
// took the write but did not answer"): the write failed, and the store
// holds what it held.
func TestAWriteKeptOutByAnotherProcesssLockIsNotWrittenAndSaysSo(t *testing.T) {
	key := store.Key{App: "app", Name: "s"}
	for _, c := range []struct {
		name           string
		busy, deadline time.Duration
		says           string
	}{
		{"the busy timeout ends the wait", 50 * time.Millisecond, 5 * time.Second,
			"the database stayed locked by another connection or process for the busy timeout (50ms)"},
		{"the call's deadline ends the wait", busyTimeout, 100 * time.Millisecond,
			"another connection or process held its write lock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secrets.db")
			s, err := open(t.Context(), path, c.busy, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer closeT(t, s)
			e, err := crypto.NewEnvelope(cryptotest.New(), crypto.FormatV2)
			if err != nil {
				t.Fatal(err)
			}
			log, _ := logtest.NewNullLogger()
			k := secrets.NewKeeper(s, e, secrets.Options{Timeout: c.deadline, Log: log})
			before, err := k.Put(t.Context(), key, []byte("before"), store.NoItem)
			if err != nil {
				t.Fatal(err)
			}
			holdWriteLock(t, path)

			_, err = k.Put(t.Context(), key, []byte("after"), before.Revision())
			switch {
			case err == nil:
				t.Fatal("a write went through another process's write lock")
			case !fault.Is(fault.Unavailable, err) || !errors.Is(err, store.ErrNotWritten) || errors.Is(err, secrets.ErrOutcomeUnknown):
				t.Errorf("the Keeper's write: %v (kind %q); want Unavailable, not written, and not of an unknown outcome", err, fault.KindOf(err))
			case !strings.Contains(err.Error(), "not written: ") || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "did not answer"):
				t.Errorf("the Keeper's write: %v; want it to say it was not written, and %q", err, c.says)
			}
			ctx, cancel := context.WithTimeout(t.Context(), c.deadline)
			defer cancel()
			if err := s.Delete(ctx, key, before.Revision()); !fault.Is(fault.Unavailable, err) || !errors.Is(err, store.ErrNotWritten) {
				t.Errorf("the store's delete: %v (kind %q); want Unavailable, not written", err, fault.KindOf(err))
			}
			stored, err := s.Get(t.Context(), key)
			if err != nil || !stored.Revision().Equal(before.Revision()) {
				t.Errorf("the store holds %v (%v), want the revision before, %v", stored, err, before.Revision())
			}
		})
	}
}
