package render

import (
	"sort"

	"github.com/jmespath-community/go-jmespath"
	"github.com/jmespath-community/go-jmespath/pkg/functions"
	"github.com/jmespath-community/go-jmespath/pkg/interpreter"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
)

// JMESPath in key order. A JSON object decodes to a Go map, and the
// library hands out an object's members in Go's map order, which is
// random on every iteration: keys, values and items, and an object
// projection (`*.name`, `@.*`), would make two renderings of the same
// input differ. A view's bytes must be a pure function of its inputs (a
// rendering wiped for idleness is made again, and must be the same
// file), so here every one of them gives the members in key order, the
// order in which a view writes an object too (appendJSONObject). A
// JSON text's own order of members is not kept: decoding drops it.

// objectValuesFunc is the function an object projection is rewritten to
// call (inKeyOrder). Its name is not a JMESPath identifier a user would
// write by chance; one who calls it gets what `*` gives.
const objectValuesFunc = "secretfs_object_values"

// inKeyOrderFunctions replace the library's functions that return an
// object's members in map order, with the same argument types.
var inKeyOrderFunctions = []functions.FunctionEntry{
	{Name: "keys", Arguments: []functions.ArgSpec{{Types: []functions.JpType{functions.JpObject}}}, Handler: jpKeys},
	{Name: "values", Arguments: []functions.ArgSpec{{Types: []functions.JpType{functions.JpObject}}}, Handler: jpValues},
	{Name: "items", Arguments: []functions.ArgSpec{{Types: []functions.JpType{functions.JpObject}}}, Handler: jpItems},
	{Name: objectValuesFunc, Arguments: []functions.ArgSpec{{Types: []functions.JpType{functions.JpAny}}}, Handler: jpObjectValues},
}

// functionCaller holds the library's functions with those above in place
// of its own. It is read-only, so one serves every search.
var functionCaller = interpreter.NewFunctionCaller(append(functions.GetDefaultFunctions(), inKeyOrderFunctions...)...)

// keyOrderedJMESPath is a compiled expression that gives an object's
// members in key order wherever it gives them at all.
type keyOrderedJMESPath struct {
	node parsing.ASTNode
}

var _ jmespath.JMESPath = keyOrderedJMESPath{}

// compileJMESPath parses expr and rewrites its object projections
// (inKeyOrder). The error is the parser's: it quotes expr, never a value.
func compileJMESPath(expr string) (jmespath.JMESPath, error) {
	node, err := parsing.NewParser().Parse(expr)
	if err != nil {
		return nil, err
	}
	return keyOrderedJMESPath{node: inKeyOrder(node)}, nil
}

// Search evaluates the expression on doc, as jmespath.JMESPath.Search does.
func (jp keyOrderedJMESPath) Search(doc any) (any, error) {
	return interpreter.NewInterpreter(doc, functionCaller, nil).Execute(jp.node, doc)
}

// inKeyOrder returns node with every object projection (left.*.right)
// made a projection over the object's values in key order
// (secretfs_object_values(left)[*].right): the library's own ranges over
// the map. Both give null for what is not an object, and drop null
// results. node is not changed.
func inKeyOrder(node parsing.ASTNode) parsing.ASTNode {
	children := make([]parsing.ASTNode, len(node.Children))
	for i, c := range node.Children {
		children[i] = inKeyOrder(c)
	}
	node.Children = children
	if node.NodeType != parsing.ASTValueProjection {
		return node
	}
	values := parsing.ASTNode{NodeType: parsing.ASTFunctionExpression, Value: objectValuesFunc, Children: children[:1]}
	return parsing.ASTNode{NodeType: parsing.ASTProjection, Children: []parsing.ASTNode{values, children[1]}}
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jpKeys(args []any) (any, error) {
	keys := sortedKeys(args[0].(map[string]any))
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out, nil
}

func jpValues(args []any) (any, error) {
	m := args[0].(map[string]any)
	out := make([]any, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out, nil
}

func jpItems(args []any) (any, error) {
	m := args[0].(map[string]any)
	out := make([]any, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, []any{k, m[k]})
	}
	return out, nil
}

// jpObjectValues is values for an object, and null for anything else, as
// an object projection's left side gives.
func jpObjectValues(args []any) (any, error) {
	if _, ok := args[0].(map[string]any); !ok {
		return nil, nil
	}
	return jpValues(args)
}
