//! Outside ZooKeeper clients for the ZooKeeper front end's tests, installed by the tests themselves:
//! Debian's `zookeeper` package (zkCli) with a headless JRE through apt-get, and kazoo with pytest in a
//! virtualenv under the target directory. A missing tool is installed, never skipped: if installing
//! fails, the test fails with the installer's output.
//!
//! Installs are idempotent and cheap when done: a marker file records what was installed (the Debian
//! package versions; the venv's pinned requirements), and a run whose marker matches does nothing. Two
//! test binaries running at once serialize on an exclusive `flock` of `zk-tools/install.lock` (threads
//! of one binary on a mutex first), so they never race an install.
//!
//! Every child process runs in its own process group with a time bound; past it the whole group is
//! killed (pytest's node processes with it) and the caller gets `timed_out`.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::wait_for;

/// The Debian packages the tests need: zkCli and its JVM, and a Python with `venv` for kazoo.
const APT_PACKAGES: &[&str] = &["zookeeper", "default-jre-headless", "python3", "python3-venv"];
/// Longest an apt-get run may take (a cold install downloads about 100 MB of Java libraries).
const APT_TIME_MAX: Duration = Duration::from_secs(15 * 60);
/// Longest creating the venv and installing the pinned requirements may take.
const PIP_TIME_MAX: Duration = Duration::from_secs(10 * 60);
/// Longest a test binary waits for another one's install to finish.
const INSTALL_LOCK_WAIT_MAX: Duration = Duration::from_secs(30 * 60);
/// The Debian interpreter the venv is built from (not whatever `python3` is first on PATH).
const PYTHON: &str = "/usr/bin/python3";
/// Where Debian's `zookeeper` package puts its shell scripts.
pub const ZK_BIN_DIR: &str = "/usr/share/zookeeper/bin";
/// The classpath zkCli runs with: Debian's zookeeper.jar has no SLF4J binding, so the log4j one is
/// added, with the package's own configuration directory first (as /work/shared/peers/zk-cluster.sh).
pub const ZK_CLASSPATH: &str =
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar";

/// Threads of one test binary take this before the cross-process file lock.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `CARGO_TARGET_DIR` if set (relative to the repository root when relative), else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_dir().join(dir),
        _ => repo_dir().join("target"),
    }
}

/// `<target>/zk-tools`: the venv, the markers, the install lock and the installers' logs.
pub fn tools_dir() -> PathBuf {
    target_dir().join("zk-tools")
}

/// How a bounded child process ended.
pub struct Finished {
    /// The exit code; `None` if it was killed (by a signal or for running past its bound).
    pub code: Option<i32>,
    /// Whether it ran past its bound and its process group was killed.
    pub timed_out: bool,
    /// Its stdout and stderr, interleaved as written.
    pub output: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last `lines` lines of the output.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.output.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs `command` in a process group of its own, stdout and stderr into `log`, for at most `limit`;
/// past it the whole group gets SIGKILL. Stdin is null unless the caller set it.
pub fn run_bounded(command: &mut Command, limit: Duration, log: &Path) -> Result<Finished, String> {
    let file = File::create(log).map_err(|error| format!("create {}: {error}", log.display()))?;
    let err = file.try_clone().map_err(|error| format!("clone {}: {error}", log.display()))?;
    let mut child = command
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|error| format!("spawn {:?}: {error}", command.get_program()))?;
    let status = wait_for(limit, || child.try_wait().ok().flatten());
    let timed_out = status.is_none();
    if timed_out {
        kill_group(child.id());
        let _ = child.wait();
    }
    let output = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    Ok(Finished { code: status.and_then(|status| status.code()), timed_out, output })
}

/// SIGKILL to the process group led by `leader` (a child this test started with `process_group(0)`).
pub fn kill_group(leader: u32) {
    if let Ok(pid) = i32::try_from(leader) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// An exclusive lock on `zk-tools/install.lock`, held until dropped.
struct InstallLock {
    _file: File,
    _guard: std::sync::MutexGuard<'static, ()>,
}

fn install_lock() -> Result<InstallLock, String> {
    let guard = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).map_err(|error| format!("create {}: {error}", dir.display()))?;
    let path = dir.join("install.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| format!("open {}: {error}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
    let locked = wait_for(INSTALL_LOCK_WAIT_MAX, || {
        (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(())
    });
    match locked {
        Some(()) => Ok(InstallLock { _file: file, _guard: guard }),
        None => {
            Err(format!("{} stayed locked for {:?} (another install hung?)", path.display(), INSTALL_LOCK_WAIT_MAX))
        }
    }
}

/// Runs an installer step; a failure names the command, its exit and the tail of its output.
fn install_step(what: &str, command: &mut Command, limit: Duration) -> Result<(), String> {
    let log = tools_dir().join(format!("{what}.log"));
    let finished = run_bounded(command, limit, &log)?;
    if finished.success() {
        return Ok(());
    }
    let how = if finished.timed_out { format!("ran past {limit:?}") } else { format!("exit {:?}", finished.code) };
    Err(format!("{what} failed ({how}); full log {}:\n{}", log.display(), finished.tail(40)))
}

/// The installed version of each of `packages`, or the names of those not installed.
fn dpkg_versions(packages: &[&str]) -> Result<Vec<String>, Vec<String>> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status} ${Version}\\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output();
    let text = output.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default();
    let mut versions = Vec::new();
    let mut missing = Vec::new();
    for package in packages {
        let line = text.lines().find(|line| line.split(' ').next() == Some(package));
        match line.and_then(|line| line.strip_prefix(&format!("{package} install ok installed "))) {
            Some(version) => versions.push(format!("{package}={version}")),
            None => missing.push((*package).to_string()),
        }
    }
    if missing.is_empty() {
        Ok(versions)
    } else {
        Err(missing)
    }
}

fn apt_get(args: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    command
}

/// Installs the Debian packages (zkCli, a JRE, Python with venv) unless the marker says they are.
///
/// # Errors
/// A message naming what failed, with the installer's output, for the test to fail with.
pub fn ensure_debian_packages() -> Result<(), String> {
    let present = || Path::new(ZK_BIN_DIR).join("zkCli.sh").exists() && Path::new(PYTHON).exists();
    ensure_apt("apt.installed", APT_PACKAGES)?;
    if !present() {
        return Err(format!("the packages are installed but {ZK_BIN_DIR}/zkCli.sh or {PYTHON} is missing"));
    }
    Ok(())
}

/// Installs `packages` through apt-get unless `marker` (under the tools dir) records them installed.
///
/// # Errors
/// A message naming what failed, with the installer's output.
pub fn ensure_apt(marker: &str, packages: &[&str]) -> Result<(), String> {
    let marker = tools_dir().join(marker);
    if marker.exists() && dpkg_versions(packages).is_ok() {
        return Ok(());
    }
    let _lock = install_lock()?;
    if let Err(missing) = dpkg_versions(packages) {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(format!("Debian packages {missing:?} are missing and installing them needs root"));
        }
        let mut install: Vec<&str> = vec!["install", "--no-install-recommends"];
        install.extend(missing.iter().map(String::as_str));
        // A fresh machine has no package lists yet; a stale one may name files gone from the mirror.
        if install_step("apt-get-install", &mut apt_get(&install), APT_TIME_MAX).is_err() {
            install_step("apt-get-update", &mut apt_get(&["update"]), APT_TIME_MAX)?;
            install_step("apt-get-install", &mut apt_get(&install), APT_TIME_MAX)?;
        }
    }
    let versions = dpkg_versions(packages)
        .map_err(|missing| format!("apt-get succeeded but {missing:?} are still not installed"))?;
    std::fs::write(&marker, versions.join("\n") + "\n").map_err(|error| format!("write {}: {error}", marker.display()))
}

/// Creates `<tools>/<name>` as a virtualenv holding the pins of `requirements` (a path under the
/// repository) unless its marker already records exactly those pins; returns its Python.
///
/// # Errors
/// A message naming what failed, with the installer's output.
pub fn ensure_venv(name: &str, requirements: &str) -> Result<PathBuf, String> {
    ensure_debian_packages()?;
    let requirements = repo_dir().join(requirements);
    let pins =
        std::fs::read_to_string(&requirements).map_err(|error| format!("read {}: {error}", requirements.display()))?;
    let venv = tools_dir().join(name);
    let marker = venv.join("gridkeeper-installed");
    let python = venv.join("bin/python");
    let installed = || std::fs::read_to_string(&marker).is_ok_and(|text| text == pins) && python.exists();
    if !installed() {
        let _lock = install_lock()?;
        if !installed() {
            let _ = std::fs::remove_dir_all(&venv);
            install_step(&format!("{name}-venv"), Command::new(PYTHON).args(["-m", "venv"]).arg(&venv), PIP_TIME_MAX)?;
            let pip = &mut Command::new(&python);
            pip.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-cache-dir", "-r"])
                .arg(&requirements);
            install_step(&format!("{name}-pip-install"), pip, PIP_TIME_MAX)?;
            std::fs::write(&marker, &pins).map_err(|error| format!("write {}: {error}", marker.display()))?;
        }
    }
    Ok(python)
}

/// The kazoo virtualenv: its Python, with kazoo (and kazoo's own test suite), pytest, pytest-timeout.
pub struct KazooEnv {
    pub python: PathBuf,
    /// The installed `kazoo` package directory (`.../site-packages/kazoo`).
    pub package: PathBuf,
}

/// Creates `target/zk-tools/kazoo-venv` with the pins in tests/zk/requirements.txt unless its marker
/// already records exactly those pins.
///
/// # Errors
/// A message naming what failed, with the installer's output.
pub fn ensure_kazoo() -> Result<KazooEnv, String> {
    let python = ensure_venv("kazoo-venv", "tests/zk/requirements.txt")?;
    kazoo_package(&python).map(|package| KazooEnv { python, package })
}

/// Where the venv's `kazoo` package lives, checked to hold the test suite.
fn kazoo_package(python: &Path) -> Result<PathBuf, String> {
    let output = Command::new(python)
        .args(["-c", "import kazoo, os; print(os.path.dirname(kazoo.__file__))"])
        .output()
        .map_err(|error| format!("run {}: {error}", python.display()))?;
    if !output.status.success() {
        return Err(format!("kazoo does not import: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !package.join("tests/test_client.py").exists() || !package.join("testing/harness.py").exists() {
        return Err(format!("{} lacks kazoo/tests or kazoo/testing", package.display()));
    }
    Ok(package)
}
