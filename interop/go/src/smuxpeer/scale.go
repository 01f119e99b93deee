package main

// scale-client: the client side of `rsmux bench --scale-sessions N --scale-client go`.
//
//	smuxpeer scale-client -connect ADDR -sessions N -streams M -seconds S [-size 1024]
//
// Opens N smux sessions (one TCP connection each) with M streams each to an echo server,
// every stream carrying one round (write -size bytes, read them back) while being set up.
// Then prints "ready SETUP_SECONDS" on stdout and waits for a line on stdin; then every
// stream does rounds at once for S seconds, and the role prints one JSON line
// {"rounds":R,"seconds":T,"setup_seconds":X,"cpu_s":C} and exits (C: this process's CPU
// seconds, user + system, during the rounds). The pause lets the parent measure the server
// with every stream open and idle.

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

// scaleRound writes msg and reads as many bytes back into buf.
func scaleRound(st *smux.Stream, msg, buf []byte) error {
	if _, err := st.Write(msg); err != nil {
		return err
	}
	_, err := io.ReadFull(st, buf)
	return err
}

func runScaleClient(args []string) {
	fs := flag.NewFlagSet("scale-client", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("connect", "", "echo server HOST:PORT")
	sessions := fs.Int("sessions", 100, "number of sessions")
	streams := fs.Int("streams", 10, "streams per session")
	seconds := fs.Float64("seconds", 3, "duration of the echo rounds")
	size := fs.Int("size", 1024, "bytes per round")
	parse(fs, c, args)
	if *addr == "" {
		fatalf("-connect is required")
	}
	cfg := c.config()
	msg := make([]byte, *size)
	for i := range msg {
		msg[i] = 0x5a
	}

	// Set up every session, 64 at a time.
	start := time.Now()
	all := make([][]*smux.Stream, *sessions)
	sess := make([]*smux.Session, *sessions)
	gate := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := 0; i < *sessions; i++ {
		wg.Add(1)
		gate <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-gate }()
			conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
			if err != nil {
				failed.Store(fmt.Sprintf("dial: %v", err))
				return
			}
			s, err := smux.Client(conn, cfg)
			if err != nil {
				failed.Store(fmt.Sprintf("smux.Client: %v", err))
				return
			}
			sess[i] = s
			buf := make([]byte, *size)
			for j := 0; j < *streams; j++ {
				st, err := s.OpenStream()
				if err != nil {
					failed.Store(fmt.Sprintf("OpenStream: %v", err))
					return
				}
				if err := scaleRound(st, msg, buf); err != nil {
					failed.Store(fmt.Sprintf("first round: %v", err))
					return
				}
				all[i] = append(all[i], st)
			}
		}(i)
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		fatalf("setup: %v", f)
	}
	setup := time.Since(start).Seconds()
	fmt.Printf("ready %.3f\n", setup)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fatalf("waiting for the go-ahead: %v", err)
	}

	// Rounds on every stream at once.
	var rounds int64
	var stop int32
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for _, sts := range all {
		for _, st := range sts {
			wg.Add(1)
			go func(st *smux.Stream) {
				defer wg.Done()
				buf := make([]byte, *size)
				n := int64(0)
				for atomic.LoadInt32(&stop) == 0 {
					if err := scaleRound(st, msg, buf); err != nil {
						failed.Store(fmt.Sprintf("round: %v", err))
						break
					}
					n++
				}
				atomic.AddInt64(&rounds, n)
			}(st)
		}
	}
	time.Sleep(secs(*seconds))
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	el := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	if f := failed.Load(); f != nil {
		fatalf("%v", f)
	}
	b, _ := json.Marshal(map[string]interface{}{
		"rounds":        rounds,
		"seconds":       el,
		"setup_seconds": setup,
		"cpu_s":         cpu,
	})
	os.Stdout.Write(append(b, '\n'))
	for _, s := range sess {
		s.Close()
	}
}
