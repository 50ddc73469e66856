module github.com/panopticon-dev/panopticon/bench

go 1.26.0

require (
	github.com/miekg/dns v1.1.73
	github.com/panopticon-dev/panopticon v0.0.0
)

require (
	github.com/andybalholm/brotli v1.2.0 // indirect
	github.com/elazarl/goproxy v1.9.4 // indirect
	github.com/klauspost/compress v1.20.5 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	gopkg.in/natefinch/lumberjack.v2 v2.2.1 // indirect
)

// The harness measures this checkout's code, never a published version.
replace github.com/panopticon-dev/panopticon => ../
