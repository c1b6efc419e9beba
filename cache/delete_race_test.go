package cache

import (
	"testing"
	"time"

	"github.com/secretfs/secretfs/fault"
	"github.com/secretfs/secretfs/store"
)

// A fetch that began before a Delete through the catalog, and ends after
// it, does not bring the deleted secret back as current (it did when
// runFetch checked for newer news only while the key held an item).
func TestAFetchThatEndsAfterADeleteDoesNotResurrectIt(t *testing.T) {
	f := newFake()
	f.set(key("a"), "deleted value", 1)
	c, clk, _ := newCatalog(t, f, Options{})

	release := f.hold("Fetch")
	done := make(chan error, 1)
	go func() { // a reader's lookup: the name was never seen, so its item is fetched
		_, err := c.Lookup(bg, key("a"))
		done <- err
	}()
	waitEntered(t, f, "Fetch") // the fetch has read the store: it holds version 1

	clk.advance(time.Millisecond)
	// The unlink through the catalog (vfs: Verify, then Delete).
	if err := c.Delete(bg, key("a"), f.snapshot(key("a")).Revision()); err != nil {
		t.Fatal(err)
	}
	release()
	<-done

	clk.advance(time.Millisecond)
	e, err := c.Lookup(bg, key("a"))
	if !fault.Is(fault.NotFound, err) {
		t.Errorf("a lookup after the Delete: %+v, %v; want NotFound", e.Meta, err)
		if err == nil {
			t.Errorf("and it reads %q", read(t, c, key("a")))
		}
	}
}

// A write through the catalog whose answer comes back after a Delete
// through the catalog removed what it wrote does not make the deleted
// revision current again (it did when Put applied its item without
// looking at what the catalog heard since the write went out).
func TestAPutAnsweredAfterADeleteOfItsRevisionDoesNotResurrectIt(t *testing.T) {
	f := newFake()
	c, clk, _ := newCatalog(t, f, Options{})

	release := f.hold("Put committed") // the write is stored; its answer is slow
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(bg, key("a"), []byte("written then removed"), store.NoItem)
		done <- err
	}()
	waitEntered(t, f, "Put committed")

	clk.advance(time.Millisecond)
	// The unlink through the catalog: Verify, then Delete.
	meta, err := c.Verify(bg, key("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(bg, key("a"), meta.Revision()); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Millisecond)
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.snapshot(key("a")) != nil {
		t.Fatal("the store still holds it")
	}
	e, err := c.Lookup(bg, key("a"))
	if !fault.Is(fault.NotFound, err) {
		t.Errorf("a lookup after the Delete: %+v, %v; want NotFound", e.Meta, err)
		if err == nil {
			t.Errorf("and it reads %q", read(t, c, key("a")))
		}
	}
}
