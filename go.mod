module github.com/panopticon-dev/panopticon

go 1.26

require (
	github.com/coreos/go-iptables v0.8.0 // indirect
	github.com/elazarl/goproxy v1.9.4 // indirect
	github.com/joho/godotenv v1.5.1 // indirect
	github.com/miekg/dns v1.1.73 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	gopkg.in/natefinch/lumberjack.v2 v2.2.1 // indirect
)
