// Package render turns secrets into the bytes of a view, and into
// environment variables: a JMESPath field of a JSON secret, a Go
// text/template over several secrets, a whole application as json,
// dotenv, yaml or properties, and the naming rule (EnvName) that every
// format, `secretfs env` and `secretfs exec` share.
//
// A rendering is a pure function of its inputs: Compile checks a view's
// spec and says which secrets it reads (Inputs) before anything is
// rendered; Render takes their plaintexts, one consistent set chosen by
// the caller, and returns the view's bytes. Nothing here reads a store,
// holds a lock or keeps state between renderings, so the file system can
// render a view from one revision of every input and cache the result as
// an immutable revision of its own.
//
// What this package must never do: import go-fuse, fs/ or vfs/; put a
// value in an error (encoding/json, JMESPath and text/template can quote
// their input in their messages: those messages are replaced, and the
// tests check it); leave a buffer that held plaintext unwiped when Go
// lets us wipe it. Where Go does not (strings decoded from JSON, fmt's
// pooled print buffer under text/template), the comment at that place
// says so; docs/SECURITY.md says it for the whole program.
package render
