// Package freeport finds loopback TCP ports for processes that a test or a
// benchmark starts and that must be told their port up front.
package freeport

import (
	"fmt"
	"net"
)

// Ports returns n distinct loopback TCP ports nobody listened on a moment
// ago. All n listeners are open at once, so the ports differ; another
// process may still take one before the caller binds it.
func Ports(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Port returns one loopback TCP port nobody listened on a moment ago.
func Port() (int, error) {
	p, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}
