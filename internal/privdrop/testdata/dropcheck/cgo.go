//go:build cgo

package main

// Linking runtime/cgo makes syscall.AllThreadsSyscall refuse to run, which
// the cgo build of this helper checks Drop reports cleanly.
import _ "runtime/cgo"
