//! Python with `redis` (redis-py) and `python-redis-lock`, for the interoperability tests, and
//! a Python lock holder driven line by line over stdin/stdout.
//!
//! The environment is made once per target directory and reused: a venv under
//! `target/tmp/python-interop/venv` (`python3 -m venv`, then `pip install`), or, where the venv
//! module is missing (Debian without `python3-venv`), `pip install --target` into
//! `target/tmp/python-interop/site`, put on `PYTHONPATH`. A file lock keeps concurrent test
//! processes from building it twice. `DISTLOCK_PYTHON=/path/to/python` uses that interpreter
//! as it is (it must import both packages).
//!
//! When the setup fails, the tests fail and say why, unless `DISTLOCK_SKIP_REDIS=1` asks to
//! skip them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The packages the tests drive.
const PACKAGES: [&str; 2] = ["redis", "python-redis-lock"];

/// Returns early from the test (after a skip notice) when no Python with both libraries can
/// be had under `DISTLOCK_SKIP_REDIS=1`, and fails it without; otherwise evaluates to the
/// [`Python`].
// Only the interop tests use it; the other test binaries share this module.
#[allow(unused_macros)]
macro_rules! require_python {
    () => {
        match $crate::support::python::python() {
            Some(python) => python,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_python;

/// An interpreter that imports `redis` and `redis_lock`.
#[derive(Debug)]
pub(crate) struct Python {
    exe: PathBuf,
    /// `PYTHONPATH` for a `pip install --target` environment.
    path: Option<PathBuf>,
    /// `redis` and `python-redis-lock` versions, for the test log.
    pub(crate) versions: String,
}

impl Python {
    /// A command running this interpreter with its packages importable.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.exe);
        command.env("PYTHONUNBUFFERED", "1");
        if let Some(path) = &self.path {
            command.env("PYTHONPATH", path);
        }
        command
    }
}

/// The environment, set up on first use; `None` (after a notice) when it cannot be had.
pub(crate) fn python() -> Option<&'static Python> {
    static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
    match PYTHON.get_or_init(setup) {
        Ok(python) => Some(python),
        Err(why) => {
            super::skip_or_fail(&format!(
                "no Python with redis and python-redis-lock could be set up: {why}"
            ));
            None
        }
    }
}

fn setup() -> Result<Python, String> {
    if let Some(exe) = std::env::var_os("DISTLOCK_PYTHON") {
        return check(PathBuf::from(exe), None);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-interop");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".lock"))
        .map_err(|e| format!("cannot create the setup lock: {e}"))?;
    // Held until this function returns: one process builds, the others then reuse.
    lock.lock()
        .map_err(|e| format!("cannot take the setup lock: {e}"))?;

    let venv = dir.join("venv");
    let venv_python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let site = dir.join("site");
    // Reuse what an earlier run made.
    if let Ok(python) = check(venv_python.clone(), None) {
        return Ok(python);
    }
    if let Ok(python) = check(system_python()?, Some(site.clone())) {
        return Ok(python);
    }

    let system = system_python()?;
    let _ = std::fs::remove_dir_all(&venv);
    let venv_error = match run(
        Command::new(&system).arg("-m").arg("venv").arg(&venv),
        Duration::from_secs(120),
    ) {
        Ok(_) => match pip_install(Command::new(&venv_python).args(["-m", "pip", "install"])) {
            Ok(()) => return check(venv_python, None),
            Err(e) => e,
        },
        Err(e) => e,
    };
    // No venv module (Debian without python3-venv): install next to the system Python.
    let _ = std::fs::remove_dir_all(&site);
    let mut target = Command::new(&system);
    target.args(["-m", "pip", "install", "--target"]).arg(&site);
    match pip_install(&mut target) {
        Ok(()) => check(system, Some(site)),
        Err(target_error) => Err(format!(
            "`python3 -m venv` + pip failed: {venv_error}; `pip install --target` failed: {target_error} \
             (on Debian/Ubuntu: apt-get install python3-venv python3-pip)"
        )),
    }
}

fn system_python() -> Result<PathBuf, String> {
    super::on_path("python3")
        .or_else(|| super::on_path("python"))
        .ok_or_else(|| "python3 is not on PATH".to_owned())
}

fn pip_install(command: &mut Command) -> Result<(), String> {
    command
        .args([
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "20",
        ])
        .args(PACKAGES)
        .env("PIP_REQUIRE_VIRTUALENV", "0");
    run(command, Duration::from_secs(300)).map(drop)
}

/// The interpreter, if it imports both libraries.
fn check(exe: PathBuf, path: Option<PathBuf>) -> Result<Python, String> {
    let mut python = Python {
        exe,
        path,
        versions: String::new(),
    };
    let mut command = python.command();
    command.args([
        "-c",
        "import redis, redis_lock; print('redis', redis.__version__, 'python-redis-lock', redis_lock.__version__)",
    ]);
    let out = run(&mut command, Duration::from_secs(30))?;
    python.versions = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(python)
}

/// Runs `command` to completion within `timeout`; its output, or why not.
fn run(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if out.status.success() {
        Ok(out)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// Which Python library a [`PyLock`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Library {
    /// `redis.Redis().lock(name, timeout=ttl)`.
    RedisPy,
    /// `redis_lock.Lock(conn, name, expire=ttl)`.
    PythonRedisLock,
}

impl Library {
    fn arg(self) -> &'static str {
        match self {
            Library::RedisPy => "redis-py",
            Library::PythonRedisLock => "python-redis-lock",
        }
    }
}

/// The Python side: one lock object of one library, driven by lines on stdin.
///
/// Commands, each answered by one line: `try` (non-blocking acquire: `acquired` or `busy`),
/// `wait SECONDS` (blocking acquire with a timeout: `acquired` or `busy`), `token` (`token
/// T`: the lock's token or id), `release` (`released`), `release-as TOKEN` (releases the lock
/// held by TOKEN, as a process that was handed the token would: `released`). A library error
/// is answered `error NAME`.
const DRIVER: &str = r#"
import logging, sys
import redis
import redis_lock

logging.getLogger("redis_lock").setLevel(logging.CRITICAL)
library, url, name, ttl = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conn = redis.Redis.from_url(url)
if library == "redis-py":
    lock = conn.lock(name, timeout=ttl)
else:
    lock = redis_lock.Lock(conn, name, expire=ttl)

def say(*words):
    print(*words, flush=True)

say("ready")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    command, *args = line.split()
    try:
        if command == "try":
            say("acquired" if lock.acquire(blocking=False) else "busy")
        elif command == "wait":
            if library == "redis-py":
                got = lock.acquire(blocking=True, blocking_timeout=float(args[0]))
            else:
                got = lock.acquire(blocking=True, timeout=int(args[0]))
            say("acquired" if got else "busy")
        elif command == "token":
            if library == "redis-py":
                token = lock.local.token
                say("token", token.decode() if token is not None else "-")
            else:
                say("token", lock.id)
        elif command == "release":
            lock.release()
            say("released")
        elif command == "release-as":
            if library == "redis-py":
                conn.lock(name).do_release(args[0])
            else:
                redis_lock.Lock(conn, name, id=args[0]).release()
            say("released")
        else:
            say("error", "unknown-command")
    except Exception as e:
        say("error", type(e).__name__)
"#;

/// A Python process holding (or trying for) one lock; killed on drop.
pub(crate) struct PyLock {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

/// How long a Python command may take to answer (not counting a blocking `wait`).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl PyLock {
    /// Starts a process with a `library` lock on `name` at `url` whose key lives `ttl_secs`
    /// (redis-py's `timeout`, python-redis-lock's `expire`); returns once it is ready.
    pub(crate) fn start(
        python: &Python,
        library: Library,
        url: &str,
        name: &str,
        ttl_secs: u64,
    ) -> PyLock {
        let mut child = python
            .command()
            .args([
                "-c",
                DRIVER,
                library.arg(),
                url,
                name,
                &ttl_secs.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python lock driver");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let mut lock = PyLock {
            child,
            stdin,
            lines,
            stderr,
            what: format!("{} lock {name:?}", library.arg()),
        };
        let ready = lock.expect(ANSWER_TIMEOUT);
        assert_eq!(ready, "ready", "{}: unexpected first line", lock.what);
        lock
    }

    /// Sends one command line.
    pub(crate) fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {command:?}: {e}", self.what));
    }

    /// The next line, waiting up to `timeout`.
    pub(crate) fn expect(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no answer within {timeout:?}; its stderr:\n{}",
                self.what,
                self.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: the Python process ended; its stderr:\n{}",
                self.what,
                self.stderr_text()
            ),
        }
    }

    /// Sends `command` and returns its answer.
    pub(crate) fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.expect(ANSWER_TIMEOUT)
    }

    /// The token (redis-py) or id (python-redis-lock) it holds the lock with.
    pub(crate) fn token(&mut self) -> String {
        let answer = self.ask("token");
        answer
            .strip_prefix("token ")
            .unwrap_or_else(|| panic!("{}: unexpected answer {answer:?}", self.what))
            .to_owned()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for PyLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
