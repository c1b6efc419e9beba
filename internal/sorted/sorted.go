// Package sorted keeps sorted lists of names.
package sorted

import "slices"

// Set returns names, sorted, with name in it if present and without it
// otherwise: inserted in its place, or deleted, in names' own array.
func Set(names []string, name string, present bool) []string {
	i, found := slices.BinarySearch(names, name)
	switch {
	case present && !found:
		return slices.Insert(names, i, name)
	case !present && found:
		return slices.Delete(names, i, i+1)
	}
	return names
}
