module github.com/panopticon-dev/panopticon

go 1.26.0

require (
	github.com/andybalholm/brotli v1.2.0
	github.com/coreos/go-iptables v0.8.0
	github.com/elazarl/goproxy v1.9.4
	github.com/joho/godotenv v1.5.1
	github.com/klauspost/compress v1.20.5
	github.com/miekg/dns v1.1.73
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require golang.org/x/text v0.43.0 // indirect
