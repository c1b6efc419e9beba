package mountconfig

import (
	"fmt"
	"strings"
)

// ViewPathsLikePatterns describes each view whose path holds a pattern's
// characters (*, ? or [): the view is one file of that very name (ls
// shows a file named "*"), never a view per matching path, while an owner
// rule's match: beside it is a pattern. A writer used to those likely
// meant a pattern; but such a name is valid, and may be meant, so it is
// warned of at start, not refused.
func (c *Config) ViewPathsLikePatterns() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, v := range c.Views {
		p := v.View.Path().String()
		if strings.ContainsAny(p, "*?[") {
			out = append(out, fmt.Sprintf("%s:%d: the view path %q is a literal file name, not a pattern (unlike an owner rule's match:): it makes one file named exactly that",
				c.File, v.Line, p))
		}
	}
	return out
}
