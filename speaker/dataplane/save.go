package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// saved is what iptables-save shows of ours: our chains with their rules,
// and the rules in other chains that jump to one of ours.
type saved struct {
	chains map[chainKey][]string // "-A NAME ..." lines, in order
	jumps  []jumpRule
}

// jumpRule is a rule in a chain that is not ours whose target is one of
// ours.
type jumpRule struct {
	table, chain string
	spec         []string // the rule without "-A CHAIN"
}

// parseSave reads iptables-save output. It only errs on a rule line it cannot
// split.
func parseSave(out []byte) (saved, error) {
	s := saved{chains: map[chainKey][]string{}}
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if strings.HasPrefix(name, chainPrefix) {
				k := chainKey{table, name}
				if _, ok := s.chains[k]; !ok {
					s.chains[k] = nil
				}
			}
		case strings.HasPrefix(line, "-A "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			if strings.HasPrefix(chain, chainPrefix) {
				k := chainKey{table, chain}
				s.chains[k] = append(s.chains[k], line)
				continue
			}
			if !strings.Contains(rest, chainPrefix) {
				continue
			}
			spec, err := splitRule(rest)
			if err != nil {
				return saved{}, fmt.Errorf("rule %q: %w", line, err)
			}
			for i := 0; i+1 < len(spec); i++ {
				if (spec[i] == "-j" || spec[i] == "-g" || spec[i] == "--jump" || spec[i] == "--goto") && strings.HasPrefix(spec[i+1], chainPrefix) {
					s.jumps = append(s.jumps, jumpRule{table, chain, spec})
					break
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return saved{}, err
	}
	return s, nil
}

// splitRule splits an iptables-save rule into arguments the way a shell
// would: double quotes group, a backslash escapes the next character.
func splitRule(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inArg = true
		case c == '"':
			quoted = !quoted
			inArg = true
		case (c == ' ' || c == '\t') && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
