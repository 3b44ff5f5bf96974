// Package tools pins the build and test tools of Backstop. The tools are
// listed as tool directives in go.mod; the Makefile builds each one into bin/.
package tools
