package plan

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// The YAML is checked in two passes. shape walks goccy's AST next to the Go types and
// reports unknown keys and wrong node types with a field path and line, which goccy's
// decoder cannot name; it also records where each field is so that the later semantic
// checks can point at lines. goccy's strict decoder then fills the structs, and any error
// it still finds is converted by token position.

// shape holds what the AST walk learned about one plan file.
type shape struct {
	// lines maps a field path (repository.url, sources[1].paths[0]) to the line of its
	// key, or of its entry for list items.
	lines map[string]int
	// keys maps the path of a mapping to its keys in file order.
	keys map[string][]string
	// paths maps token positions to field paths, to place goccy's decoder errors.
	paths map[[2]int]string
	// anchors maps anchor names to their nodes, so aliases are checked like the original.
	anchors map[string]ast.Node
	// aliasLine, while an alias's target is walked, is the alias's line: fields that come
	// from an alias are reported where the alias is, not where the anchor is.
	aliasLine int
}

func newShape() *shape {
	return &shape{lines: map[string]int{}, keys: map[string][]string{}, paths: map[[2]int]string{}, anchors: map[string]ast.Node{}}
}

// line returns the line of path, or of its nearest enclosing field that is in the file:
// a missing field is reported at the mapping that should hold it.
func (s *shape) line(path string) int {
	for {
		if l, ok := s.lines[path]; ok {
			return l
		}
		if path == "" {
			return 1
		}
		path = parentPath(path)
	}
}

// hasKey reports whether the mapping at path has key, whatever its value.
func (s *shape) hasKey(path, key string) bool {
	for _, k := range s.keys[path] {
		if k == key {
			return true
		}
	}
	return false
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (s *shape) notePos(tk *token.Token, path string) {
	if tk != nil && tk.Position != nil {
		s.paths[[2]int{tk.Position.Line, tk.Position.Column}] = path
	}
}

var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
)

// yamlFields maps the YAML keys of struct type t to their fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name) // goccy's default
		}
		m[name] = f
	}
	return m
}

// walk checks node against Go type t. path names the field, line is where its key or
// list entry is.
func (s *shape) walk(node ast.Node, t reflect.Type, path string, line int) *Error {
	switch n := node.(type) {
	case *ast.TagNode:
		return s.walk(n.Value, t, path, line)
	case *ast.AnchorNode:
		if err := s.walk(n.Value, t, path, line); err != nil {
			return err
		}
		// Registered after its value, so an alias inside it cannot loop.
		s.anchors[n.Name.GetToken().Value] = n.Value
		return nil
	case *ast.AliasNode:
		// Check what the alias stands for as if it were written here. An unknown
		// anchor is left to goccy, which reports it.
		if target, ok := s.anchors[n.Value.GetToken().Value]; ok {
			defer s.atAlias(n)()
			return s.walk(target, t, path, line)
		}
		return nil
	case nil, *ast.NullNode:
		return nil // the zero value; required fields are checked later
	}
	s.notePos(node.GetToken(), path)
	mismatch := func(want string) *Error {
		return &Error{Line: line, Field: path, Msg: fmt.Sprintf("expected %s, got %s", want, describe(node))}
	}

	switch {
	case t == sizeType:
		text, ok := scalarText(node)
		if !ok {
			return mismatch("a size such as 256MiB")
		}
		if _, err := ParseSize(text); err != nil {
			return &Error{Line: line, Field: path, Msg: err.Error()}
		}
		return nil
	case t == durationType:
		text, ok := scalarText(node)
		if !ok {
			return mismatch("a duration such as 7d")
		}
		if _, err := ParseDuration(text); err != nil {
			return &Error{Line: line, Field: path, Msg: err.Error()}
		}
		return nil
	}

	switch t.Kind() {
	case reflect.Struct:
		m, ok := node.(*ast.MappingNode)
		if !ok {
			return mismatch("a mapping")
		}
		if _, ok := s.keys[path]; !ok {
			s.keys[path] = []string{} // present, even when empty
		}
		return s.walkMapping(m, t, path)
	case reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			return mismatch(listOf(t.Elem()))
		}
		for i, v := range seq.Values {
			ip := fmt.Sprintf("%s[%d]", path, i)
			il := line
			if i < len(seq.Entries) && seq.Entries[i] != nil && seq.Entries[i].Start != nil {
				il = s.lineOf(seq.Entries[i].Start) // the "-" of a block list
			} else if tk := v.GetToken(); tk != nil && tk.Position != nil {
				il = s.lineOf(tk)
			}
			s.lines[ip] = il
			if err := s.walk(v, t.Elem(), ip, il); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		switch n := node.(type) {
		case *ast.StringNode, *ast.LiteralNode:
			return nil
		case *ast.IntegerNode:
			// goccy turns 0x1F into "31"; only accept numbers that read back the same.
			if fmt.Sprint(n.Value) == n.GetToken().Value {
				return nil
			}
		}
		if _, ok := scalarText(node); ok {
			return &Error{Line: line, Field: path, Msg: fmt.Sprintf("expected a string, got %s (put it in quotes)", describe(node))}
		}
		return mismatch("a string")
	case reflect.Int, reflect.Int64, reflect.Int32:
		if _, ok := node.(*ast.IntegerNode); !ok {
			return mismatch("an integer")
		}
		return nil
	case reflect.Bool:
		if _, ok := node.(*ast.BoolNode); !ok {
			return mismatch("true or false")
		}
		return nil
	}
	return nil // other types: left to goccy's decoder
}

// atAlias makes lines recorded until the returned func runs point at alias a.
func (s *shape) atAlias(a *ast.AliasNode) (restore func()) {
	saved := s.aliasLine
	if saved == 0 {
		s.aliasLine = a.GetToken().Position.Line
	}
	return func() { s.aliasLine = saved }
}

// lineOf returns the line to record for tk: its own, or the alias being expanded.
func (s *shape) lineOf(tk *token.Token) int {
	if s.aliasLine > 0 {
		return s.aliasLine
	}
	return tk.Position.Line
}

// walkMapping checks the keys of m against struct type t.
func (s *shape) walkMapping(m *ast.MappingNode, t reflect.Type, path string) *Error {
	fields := yamlFields(t)
	for _, mv := range m.Values {
		if mv.Key.IsMergeKey() {
			// <<: *base or <<: {…}: the merged keys count as keys of this mapping.
			if err := s.walkMerge(mv.Value, t, path); err != nil {
				return err
			}
			continue
		}
		key := keyName(mv.Key)
		fp := joinPath(path, key)
		kl := s.lineOf(mv.Key.GetToken())
		s.lines[fp] = kl
		s.keys[path] = append(s.keys[path], key)
		s.notePos(mv.Key.GetToken(), fp)
		f, ok := fields[key]
		if !ok {
			return &Error{Line: kl, Field: fp, Msg: "unknown field"}
		}
		if err := s.walk(mv.Value, f.Type, fp, kl); err != nil {
			return err
		}
	}
	return nil
}

// walkMerge checks the value of a merge key: a mapping, an alias of one, or a list of those.
func (s *shape) walkMerge(v ast.Node, t reflect.Type, path string) *Error {
	switch n := v.(type) {
	case *ast.TagNode:
		return s.walkMerge(n.Value, t, path)
	case *ast.AnchorNode:
		if err := s.walkMerge(n.Value, t, path); err != nil {
			return err
		}
		s.anchors[n.Name.GetToken().Value] = n.Value
	case *ast.AliasNode:
		if target, ok := s.anchors[n.Value.GetToken().Value]; ok {
			defer s.atAlias(n)()
			return s.walkMerge(target, t, path)
		}
	case *ast.MappingNode:
		return s.walkMapping(n, t, path)
	case *ast.SequenceNode:
		for _, e := range n.Values {
			if err := s.walkMerge(e, t, path); err != nil {
				return err
			}
		}
	}
	return nil // anything else is goccy's to reject
}

func listOf(elem reflect.Type) string {
	switch {
	case elem == sizeType:
		return "a list of sizes"
	case elem == durationType:
		return "a list of durations"
	case elem.Kind() == reflect.String:
		return "a list of strings"
	case elem.Kind() == reflect.Struct:
		return "a list of mappings"
	}
	return "a list"
}

// keyName returns a mapping key as written, without quotes.
func keyName(k ast.MapKeyNode) string {
	switch n := k.(type) {
	case *ast.StringNode:
		return n.Value
	case *ast.MappingKeyNode: // "? key" form
		if v, ok := n.Value.(ast.MapKeyNode); ok {
			return keyName(v)
		}
	}
	return k.GetToken().Value
}

// scalarText returns the text of a scalar node, the way a string-typed decode sees it.
func scalarText(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		return n.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// describe names the kind of a YAML node for "expected X, got Y" messages.
func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a decimal number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// goccy writes positions as [2:3]; plan messages speak of lines.
var goccyPos = regexp.MustCompile(`\[(\d+):\d+\]`)

// convertYAMLError turns an error from goccy's parser or decoder into a plan Error,
// dropping the source excerpt goccy appends. sh may be nil (syntax errors come before
// the AST exists).
func convertYAMLError(file string, err error, sh *shape) *Error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return &Error{File: file, Msg: msg}
	}
	e := &Error{File: file, Msg: goccyPos.ReplaceAllString(ye.GetMessage(), "line $1")}
	if tk := ye.GetToken(); tk != nil && tk.Position != nil {
		e.Line = tk.Position.Line
		if sh != nil {
			e.Field = sh.paths[[2]int{tk.Position.Line, tk.Position.Column}]
		}
	}
	if _, ok := ye.(*yaml.UnknownFieldError); ok && e.Field != "" {
		e.Msg = "unknown field"
	}
	return e
}
