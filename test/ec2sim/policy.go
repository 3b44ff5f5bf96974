package ec2sim

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Policy is an IAM identity policy the simulator holds every request to, as
// AWS holds the controller's role to its policies: an action on a resource is
// allowed when some Allow statement matches it, action, resource and every
// condition, and no Deny statement does.
type Policy struct {
	Statements []Statement
}

// Statement is one statement of a policy.
type Statement struct {
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
	// Conditions by operator, then by context key, the values any of which
	// may match.
	Conditions map[string]map[string][]string
}

// conditionOperators are those the simulator evaluates; a policy using
// another is refused when it is loaded, not misread.
var conditionOperators = map[string]bool{
	"StringEquals": true, "StringNotEquals": true, "StringLike": true, "StringNotLike": true,
	"StringEqualsIgnoreCase": true, "ArnLike": true, "ArnEquals": true, "Bool": true,
	"ForAllValues:StringEquals": true, "ForAllValues:StringLike": true, "ForAnyValue:StringEquals": true, "ForAnyValue:StringLike": true,
}

// ParsePolicy reads a policy document, after replacing each ${name} of vars
// (as CloudFormation's Fn::Sub does); a placeholder left over is an error.
func ParsePolicy(doc []byte, vars map[string]string) (*Policy, error) {
	text := string(doc)
	for k, v := range vars {
		text = strings.ReplaceAll(text, "${"+k+"}", v)
	}
	if i := strings.Index(text, "${"); i >= 0 {
		end := strings.Index(text[i:], "}")
		return nil, fmt.Errorf("policy: placeholder %s has no value", text[i:i+max(end+1, 2)])
	}
	var raw struct {
		Version   string
		Statement []struct {
			Sid       string
			Effect    string
			Action    json.RawMessage
			Resource  json.RawMessage
			Condition map[string]map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if raw.Version != "2012-10-17" {
		return nil, fmt.Errorf("policy: Version must be 2012-10-17, got %q", raw.Version)
	}
	p := &Policy{}
	for i, st := range raw.Statement {
		s := Statement{Sid: st.Sid, Effect: st.Effect, Conditions: map[string]map[string][]string{}}
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("policy: statement %d (%s): Effect must be Allow or Deny", i, st.Sid)
		}
		var err error
		if s.Actions, err = stringOrList(st.Action); err != nil || len(s.Actions) == 0 {
			return nil, fmt.Errorf("policy: statement %d (%s): Action must be a string or a list of strings", i, st.Sid)
		}
		if s.Resources, err = stringOrList(st.Resource); err != nil || len(s.Resources) == 0 {
			return nil, fmt.Errorf("policy: statement %d (%s): Resource must be a string or a list of strings", i, st.Sid)
		}
		for op, keys := range st.Condition {
			if !conditionOperators[strings.TrimSuffix(op, "IfExists")] {
				return nil, fmt.Errorf("policy: statement %d (%s): condition operator %s is not simulated", i, st.Sid, op)
			}
			s.Conditions[op] = map[string][]string{}
			for key, v := range keys {
				values, err := stringOrList(v)
				if err != nil {
					return nil, fmt.Errorf("policy: statement %d (%s): condition %s %s: %w", i, st.Sid, op, key, err)
				}
				s.Conditions[op][key] = values
			}
		}
		p.Statements = append(p.Statements, s)
	}
	return p, nil
}

// LoadPolicy reads a policy document from a file; see ParsePolicy.
func LoadPolicy(path string, vars map[string]string) (*Policy, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(doc, vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func stringOrList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		// Bool conditions may be written as JSON booleans.
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			return []string{fmt.Sprint(b)}, nil
		}
		return nil, err
	}
	return many, nil
}

// Authorization is one action on one resource a request needs, with the
// request context its conditions read: aws:RequestTag/K, aws:ResourceTag/K,
// aws:TagKeys, ec2:CreateAction, iam:PassedToService, aws:RequestedRegion.
type Authorization struct {
	Action   string
	Resource string
	Context  map[string][]string
}

// Allows reports whether the policy allows a; the reason names what failed.
func (p *Policy) Allows(a Authorization) (bool, string) {
	allowed := false
	for _, s := range p.Statements {
		if !s.matches(a) {
			continue
		}
		if s.Effect == "Deny" {
			return false, fmt.Sprintf("with an explicit deny in statement %s", s.Sid)
		}
		allowed = true
	}
	if !allowed {
		return false, "because no identity-based policy allows the " + a.Action + " action" + p.nearMiss(a)
	}
	return true, ""
}

// nearMiss names the conditions that failed in statements whose action and
// resource matched, so a test failure says which tag was missing.
func (p *Policy) nearMiss(a Authorization) string {
	var misses []string
	for _, s := range p.Statements {
		if s.Effect != "Allow" || !anyGlob(s.Actions, a.Action, true) || !anyGlob(s.Resources, a.Resource, false) {
			continue
		}
		for _, op := range sortedOps(s.Conditions) {
			for _, key := range sortedKeysOf(s.Conditions[op]) {
				if !evaluate(op, s.Conditions[op][key], a.Context[key], hasKey(a.Context, key)) {
					misses = append(misses, fmt.Sprintf("%s: %s %s %v (request has %v)", s.Sid, op, key, s.Conditions[op][key], a.Context[key]))
				}
			}
		}
	}
	if len(misses) == 0 {
		return ""
	}
	return " (conditions not met: " + strings.Join(misses, "; ") + ")"
}

func (s Statement) matches(a Authorization) bool {
	if !anyGlob(s.Actions, a.Action, true) || !anyGlob(s.Resources, a.Resource, false) {
		return false
	}
	for op, keys := range s.Conditions {
		for key, want := range keys {
			if !evaluate(op, want, a.Context[key], hasKey(a.Context, key)) {
				return false
			}
		}
	}
	return true
}

func hasKey(ctx map[string][]string, key string) bool {
	_, ok := ctx[key]
	return ok
}

// evaluate applies one condition: the operator, the policy's values and the
// request's. As in IAM, a key the request lacks fails a condition (unless
// ...IfExists), but satisfies ForAllValues and the negated operators.
func evaluate(op string, want, got []string, present bool) bool {
	ifExists := strings.HasSuffix(op, "IfExists")
	op = strings.TrimSuffix(op, "IfExists")
	if !present {
		return ifExists || strings.HasPrefix(op, "ForAllValues:") || op == "StringNotEquals" || op == "StringNotLike"
	}
	match := func(w, g string) bool {
		switch op {
		case "StringEquals", "ForAllValues:StringEquals", "ForAnyValue:StringEquals", "ArnEquals", "Bool", "StringNotEquals":
			return w == g
		case "StringEqualsIgnoreCase":
			return strings.EqualFold(w, g)
		default: // the Like operators
			return glob(w, g, false)
		}
	}
	anyOf := func(g string) bool {
		for _, w := range want {
			if match(w, g) {
				return true
			}
		}
		return false
	}
	switch op {
	case "ForAllValues:StringEquals", "ForAllValues:StringLike":
		for _, g := range got {
			if !anyOf(g) {
				return false
			}
		}
		return true
	case "StringNotEquals", "StringNotLike":
		for _, g := range got {
			if anyOf(g) {
				return false
			}
		}
		return true
	default:
		for _, g := range got {
			if anyOf(g) {
				return true
			}
		}
		return false
	}
}

func anyGlob(patterns []string, v string, fold bool) bool {
	for _, p := range patterns {
		if glob(p, v, fold) {
			return true
		}
	}
	return false
}

// glob matches IAM's wildcards: * any run of characters, ? one.
func glob(pattern, v string, fold bool) bool {
	if fold {
		pattern, v = strings.ToLower(pattern), strings.ToLower(v)
	}
	if pattern == "" {
		return v == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(v); i++ {
			if glob(pattern[1:], v[i:], false) {
				return true
			}
		}
		return false
	case '?':
		return v != "" && glob(pattern[1:], v[1:], false)
	default:
		return v != "" && v[0] == pattern[0] && glob(pattern[1:], v[1:], false)
	}
}

func sortedOps(m map[string]map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeysOf(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// With returns a copy of the policy with more statements, as a user extends
// the shipped policy (for their own SSM parameters, say).
func (p *Policy) With(statements ...Statement) *Policy {
	out := &Policy{Statements: append([]Statement(nil), p.Statements...)}
	out.Statements = append(out.Statements, statements...)
	return out
}

// SetPolicy replaces the policy requests are held to; nil allows everything.
func (s *Server) SetPolicy(p *Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Policy = p
}

// Policy is the policy requests are held to.
func (s *Server) Policy() *Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Policy
}

// AllowAll is a policy that allows every action on every resource: for tests
// of the services' own semantics, whose requests are not Backstop's.
var AllowAll = &Policy{Statements: []Statement{{Sid: "AllowAll", Effect: "Allow", Actions: []string{"*"}, Resources: []string{"*"}}}}
