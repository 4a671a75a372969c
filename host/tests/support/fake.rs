//! A scripted fake Redis server for hostile-reply tests: a std `TcpListener` thread that
//! answers the client's handshake like a RESP3 Redis 7.2 would, then answers each lock
//! command with the next scripted step, byte for byte, whatever those bytes are.
//!
//! Every connection (the client may reconnect) shares one script; when it runs out, the
//! server reads on and answers nothing. Every socket read is bounded, and the threads stop
//! when the [`FakeServer`] is dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The `HELLO 3` answer of a Redis 7.2 server: RESP3, no native compare-and-delete, so
/// release and extend go by `EVALSHA`.
pub(crate) const HELLO_REPLY: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:3\r\n";

/// What the fake does with one lock command.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Send these bytes in pieces of `n` bytes, pausing between them (split reads).
    Trickle(Vec<u8>, usize),
    /// Send these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Do this for this command and every later one, on every connection.
    Repeat(Box<Step>),
}

impl Step {
    /// [`Step::Send`] of a byte string.
    pub(crate) fn send(bytes: &[u8]) -> Step {
        Step::Send(bytes.to_vec())
    }

    /// [`Step::Repeat`] of [`Step::send`].
    pub(crate) fn always(bytes: &[u8]) -> Step {
        Step::Repeat(Box::new(Step::send(bytes)))
    }
}

struct Shared {
    /// The answer to `HELLO`.
    hello: Vec<u8>,
    script: Mutex<VecDeque<Step>>,
    /// The lock commands received (the handshake's are not recorded), as their arguments.
    commands: Mutex<Vec<Vec<Vec<u8>>>>,
    connections: Mutex<u32>,
    /// Set by [`Step::Repeat`]: what to do with every later command.
    always: Mutex<Option<Step>>,
    stop: AtomicBool,
}

/// A fake server on a free loopback port; stops on drop.
pub(crate) struct FakeServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Starts a fake that handshakes normally and answers lock commands with `script`.
    pub(crate) fn start(script: Vec<Step>) -> FakeServer {
        Self::start_with_hello(HELLO_REPLY, script)
    }

    /// [`FakeServer::start`] answering `HELLO` with `hello` instead.
    pub(crate) fn start_with_hello(hello: &[u8], script: Vec<Step>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            hello: hello.to_vec(),
            script: Mutex::new(script.into()),
            commands: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
            always: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(&listener, &shared))
        };
        FakeServer {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The lock commands received so far, each as its name and arguments.
    pub(crate) fn commands(&self) -> Vec<Vec<Vec<u8>>> {
        self.shared
            .commands
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The names of the lock commands received so far (`SET`, `EVALSHA`, …).
    pub(crate) fn command_names(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| String::from_utf8_lossy(c.first().map_or(&[][..], Vec::as_slice)).into())
            .collect()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> u32 {
        self.shared.connections.lock().map(|c| *c).unwrap_or(0)
    }

    /// Script steps not used yet.
    pub(crate) fn steps_left(&self) -> usize {
        self.shared.script.lock().map(|s| s.len()).unwrap_or(0)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Ok(mut n) = shared.connections.lock() {
                    *n += 1;
                }
                let shared = Arc::clone(shared);
                workers.push(thread::spawn(move || serve(stream, &shared)));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Answers one connection until it closes, a step closes it, or the server stops.
fn serve(stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .is_err()
    {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(command) = read_command(&mut reader, shared) {
        let name = command
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_slice() {
            b"HELLO" => Step::Send(shared.hello.clone()),
            b"SCRIPT" | b"CLIENT" | b"SELECT" => Step::send(b"+OK\r\n"),
            _ => {
                if let Ok(mut commands) = shared.commands.lock() {
                    commands.push(command);
                }
                let always = shared.always.lock().ok().and_then(|a| a.clone());
                let next = always.or_else(|| shared.script.lock().ok()?.pop_front());
                match next {
                    Some(Step::Repeat(step)) => {
                        if let Ok(mut always) = shared.always.lock() {
                            *always = Some((*step).clone());
                        }
                        *step
                    }
                    Some(step) => step,
                    // Out of script: read on, answer nothing.
                    None => continue,
                }
            }
        };
        let written = match reply {
            Step::Send(bytes) => writer.write_all(&bytes),
            Step::Trickle(bytes, n) => bytes.chunks(n.max(1)).try_for_each(|piece| {
                writer.write_all(piece)?;
                writer.flush()?;
                thread::sleep(Duration::from_millis(2));
                Ok(())
            }),
            Step::SendAndClose(bytes) => {
                let _ = writer.write_all(&bytes);
                let _ = writer.flush();
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
            // Resolved above: a repeat holds the step it repeats.
            Step::Repeat(_) => Ok(()),
        };
        if written.and_then(|()| writer.flush()).is_err() {
            return;
        }
    }
}

/// Reads one command (an array of bulk strings); `None` at EOF, on junk, or on stop.
fn read_command(reader: &mut BufReader<TcpStream>, shared: &Shared) -> Option<Vec<Vec<u8>>> {
    let header = read_line(reader, shared)?;
    let count: usize = header.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len: usize = read_line(reader, shared)?.strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len.checked_add(2)?];
        read_exact(reader, &mut arg, shared)?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

/// One CRLF-terminated line, retrying read timeouts until the server stops.
fn read_line(reader: &mut BufReader<TcpStream>, shared: &Shared) -> Option<String> {
    let mut line = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with(b"\r\n") => {
                line.truncate(line.len() - 2);
                return String::from_utf8(line).ok();
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) && !shared.stop.load(Ordering::Acquire) => {}
            Err(_) => return None,
        }
    }
}

fn read_exact(reader: &mut BufReader<TcpStream>, buf: &mut [u8], shared: &Shared) -> Option<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(e) if is_timeout(&e) && !shared.stop.load(Ordering::Acquire) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
