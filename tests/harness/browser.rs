//! A real headless Chromium (Debian's `chromium`), driven over the Chrome
//! DevTools Protocol on its `--remote-debugging-pipe`: JSON messages ended
//! by a NUL byte, commands on the browser's fd 3, answers and events on its
//! fd 4. The pipe needs no port, no WebSocket and no driver process; the
//! few commands the tests use (open a page, evaluate JavaScript in it,
//! take a screenshot) are the protocol's own methods, so no client crate
//! is needed (chromiumoxide would add a generated client of the whole
//! protocol; WebDriver, a chromedriver process and a second protocol).
//!
//! The browser runs with the flags this machine needs (no sandbox as root,
//! no background networking: the network is closed) in a fresh profile in
//! the test's directory, and is killed when the [`Browser`] is dropped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// Where Debian puts Chromium (`apt-get install chromium`, done by `.ci/run`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Longest wait for one answer of the browser (a guard against hangs).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    /// The page's session (flattened: its commands carry this id).
    session: String,
    log: PathBuf,
}

impl Browser {
    /// Starts Chromium with its profile and log in `dir` and opens `url`
    /// in a new page.
    pub fn open(dir: &Path, url: &str) -> Browser {
        let (to_browser_read, to_browser_write) = pipe();
        let (from_browser_read, from_browser_write) = pipe();
        let log = dir.join("chromium.log");
        let log_file = std::fs::File::create(&log).expect("create chromium.log");
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file);
        let (read_fd, write_fd) = (to_browser_read.as_raw_fd(), from_browser_write.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Copied above 3 and 4 first, so neither end is overwritten by the other's dup2.
                let read = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let write = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child =
            command.spawn().unwrap_or_else(|error| panic!("start {CHROMIUM}: {error} (apt-get install chromium)"));
        // The browser's ends stay only in the browser.
        drop(to_browser_read);
        drop(from_browser_write);
        let (sender, answers) = mpsc::channel();
        let reader = std::fs::File::from(from_browser_read);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                let Ok(value) = serde_json::from_slice::<Value>(&message) else { continue };
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands: std::fs::File::from(to_browser_write),
            answers,
            next_id: 0,
            session: String::new(),
            log,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    /// Evaluates `expression` in the page and returns its value (JSON).
    /// A thrown exception panics with its description.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.call(Some(&session), "Runtime.evaluate", params);
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// A PNG of the page as it is shown.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let session = self.session.clone();
        let shot = self.call(Some(&session), "Page.captureScreenshot", json!({ "format": "png" }));
        let data = shot["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD.decode(data).expect("base64 screenshot")
    }

    /// Sends one command and waits for its answer (events are skipped).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("a JSON command");
        bytes.push(0);
        if let Err(error) = self.commands.write_all(&bytes) {
            panic!("send {method} to chromium: {error}\n{}", self.log_tail());
        }
        loop {
            let answer = match self.answers.recv_timeout(ANSWER_TIMEOUT) {
                Ok(answer) => answer,
                Err(error) => panic!("no answer to {method} from chromium ({error})\n{}", self.log_tail()),
            };
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                panic!("chromium refused {method}: {error}");
            }
            return answer["result"].clone();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- chromium log ---\n{}", lines[lines.len().saturating_sub(20)..].join("\n"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe: (read end, write end), both close-on-exec (the child gets them by dup2).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let created = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(created, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
