package cache

import (
	"context"
	"testing"
	"time"

	"github.com/secretfs/secretfs/breaker"
)

// scanOrigin's Apps reads the store when called, then waits for gate: a
// Scan that read before what happened while it was on its way.
type scanOrigin struct {
	*fakeOrigin
	gate    chan struct{}
	entered chan struct{}
}

func (s *scanOrigin) Apps(ctx context.Context) ([]string, error) {
	names, err := s.fakeOrigin.Apps(ctx)
	close(s.entered)
	<-s.gate
	return names, err
}

func newScanCatalog(t *testing.T) (*fakeOrigin, *scanOrigin, *Catalog, *clock) {
	f := newFake()
	f.set(key("a"), "alpha", 1)
	clk, rec := newClock(), &recorder{}
	f.stores = &breaker.Breaker{Name: "the store", Now: clk.Now}
	f.keys = &breaker.Breaker{Name: "the keys", Now: clk.Now}
	s := &scanOrigin{fakeOrigin: f, gate: make(chan struct{}), entered: make(chan struct{})}
	c := New(s, Options{TTL: ttl, Now: clk.Now, Observer: rec})
	c.after = clk.afterFunc
	t.Cleanup(c.Close)
	return f, s, c, clk
}

// A root listing that began before an application's own listing found it
// empty, and ended after, does not bring it back: what began later
// stands. (It said the application held secrets for a TTL; found by a
// review.)
func TestARootListingOlderThanAnApplicationsEmptyListingDoesNotBringItBack(t *testing.T) {
	f, s, c, clk := newScanCatalog(t)
	apps := make(chan error)
	go func() { _, err := c.Apps(bg); apps <- err }()
	<-s.entered // the Scan read "app"
	clk.advance(time.Second)
	f.remove(key("a"))
	if ok, err := c.HasSecrets(bg, "app"); ok || err != nil {
		t.Fatalf("HasSecrets after the removal: %v, %v", ok, err)
	}
	close(s.gate)
	if err := <-apps; err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasSecrets(bg, "app"); ok || err != nil {
		t.Errorf("HasSecrets after the older root listing ended: %v, %v; want false (a newer listing found it empty)", ok, err)
	}
}

// The last secret removed through the catalog while its application's
// listing and a root listing were on their way: neither, having begun
// before the removal, makes the root vouch for the application again.
// (It did; found by a review.)
func TestALastSecretRemovedWhileBothListingsRanIsNotVouchedForByTheRoot(t *testing.T) {
	f, s, c, clk := newScanCatalog(t)
	rev := lookup(t, c, key("a")).Revision()
	release := f.hold("List")
	has := make(chan bool)
	go func() { ok, _ := c.HasSecrets(bg, "app"); has <- ok }()
	waitEntered(t, f, "List")
	clk.advance(time.Second)
	apps := make(chan error)
	go func() { _, err := c.Apps(bg); apps <- err }()
	<-s.entered
	clk.advance(time.Second)
	if err := c.Delete(bg, key("a"), rev); err != nil {
		t.Fatal(err)
	}
	release()
	<-has
	close(s.gate)
	if err := <-apps; err != nil {
		t.Fatal(err)
	}
	clk.advance(ttl - 1500*time.Millisecond) // the app's listing is a TTL old; the root's is not
	if ok, err := c.HasSecrets(bg, "app"); ok || err != nil {
		t.Errorf("HasSecrets after its last secret was removed through the catalog: %v, %v; want false", ok, err)
	}
}
