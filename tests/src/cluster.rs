//! A PostgreSQL cluster of a test's own, for what the machine's server must never be put
//! through (a restart) or cannot show (a certificate of the test's choosing): `initdb` in a
//! temporary folder, `ssl = on` with a server certificate signed by a CA the test makes, its own
//! port on 127.0.0.1. Dropped, it stops and its folder goes.
//!
//! The server's programs are found under `/usr/lib/postgresql/*/bin` (the newest version), or in
//! `$COUPON_TEST_PG_BIN`. Without them a test fails under CI (`CI` set) and elsewhere says in one
//! line that it skipped. Run as root, the server runs as the `postgres` OS user (it refuses
//! root), through `runuser`.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The variable that may name the folder holding `initdb` and `pg_ctl`.
pub const BIN_VAR: &str = "COUPON_TEST_PG_BIN";

/// A certificate authority a test makes: it signs server certificates, and its certificate is
/// what a client trusts.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// Whether a server certificate is valid now or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday for a year.
    Current,
    /// Ended yesterday.
    Expired,
}

/// A server certificate and its key, in PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA whose certificate names `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        let pem = params.self_signed(&key).expect("the CA signs itself").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate, in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `path` (for `sslrootcert` or `tls_ca_file`).
    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("the CA file is written");
    }

    /// A server certificate for `names` (host names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str], validity: Validity) -> ServerCert {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "coupon-host test server");
        let day = time::Duration::days(1);
        let now = time::OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - day, now + 365 * day),
            Validity::Expired => (now - 30 * day, now - day),
        };
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the server's certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A running PostgreSQL cluster of the test's own.
pub struct Cluster {
    /// The temporary folder: the data folder, the socket, the log, the CA file.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The OS user the server runs as, when the tests run as root: `(uid, gid)`.
    owner: Option<(u32, u32)>,
    port: u16,
    /// The CA that signed the certificate the server starts with.
    pub ca: TestCa,
}

impl Cluster {
    /// A new cluster, started, serving a certificate for `localhost` signed by [`Cluster::ca`];
    /// `None` after one line saying the test is skipped when the server's programs are not
    /// here — unless `CI` is set, where that fails the test.
    pub fn start() -> Option<Cluster> {
        let bin = match find_bin() {
            Ok(bin) => bin,
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "no PostgreSQL server programs (CI is set: tests that need them fail): {why}"
                );
                eprintln!("skipped: no PostgreSQL server programs ({why}; set {BIN_VAR})");
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("coupon-pg-")
            .tempdir()
            .expect("a temporary folder");
        let root = std::fs::metadata(dir.path()).expect("the folder").uid() == 0;
        let owner = root.then(postgres_user);
        let mut cluster = Cluster {
            dir,
            bin,
            owner,
            port: 0,
            ca: TestCa::new("coupon-host test CA"),
        };
        cluster.give(cluster.dir.path());
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let cert = cluster.ca.issue(&["localhost"], Validity::Current);
        cluster.write_cert(&cert);
        cluster.ca.write(&cluster.ca_file());
        // A port taken between the probe and the server's bind: try another.
        for attempt in 0..3 {
            cluster.port = free_port();
            cluster.configure();
            match cluster.pg_ctl(&["start"]) {
                Ok(()) => return Some(cluster),
                Err(why) if attempt == 2 => panic!("the test cluster does not start: {why}"),
                Err(_) => {}
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The port it listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for its `postgres` database as superuser `postgres` (trust: any password goes),
    /// reaching 127.0.0.1 through `host` (`localhost` or `127.0.0.1`).
    pub fn url(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// The file holding [`Cluster::ca`]'s certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A folder for the test's own files, removed with the cluster.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Serves `cert` from now on (the server restarts to take it).
    pub fn serve(&self, cert: &ServerCert) {
        self.write_cert(cert);
        self.restart();
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is cut, and the server
    /// is back, on the same port, when this returns.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"])
            .unwrap_or_else(|why| panic!("the test cluster does not restart: {why}"));
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Hands `path` to the server's OS user (when the tests run as root).
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            chown(path, Some(uid), Some(gid)).expect("chown to the postgres user");
        }
    }

    fn write_cert(&self, cert: &ServerCert) {
        let (crt, key) = (
            self.data().join("server.crt"),
            self.data().join("server.key"),
        );
        std::fs::write(&crt, &cert.cert_pem).expect("server.crt is written");
        std::fs::write(&key, &cert.key_pem).expect("server.key is written");
        // The server refuses a key others may read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.give(&crt);
        self.give(&key);
    }

    /// Its settings, appended to `postgresql.conf` (a later line wins).
    fn configure(&self) {
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("initdb wrote postgresql.conf");
        text.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nmax_connections = 100\n",
            self.port,
            self.dir.path().display()
        ));
        std::fs::write(&conf, text).expect("postgresql.conf is written");
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let mut all = vec!["-D", &data, "-l", &log, "-w", "-t", "120"];
        all.extend_from_slice(args);
        let output = self.command("pg_ctl", &all).output();
        match output {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            )),
            Err(e) => Err(format!("pg_ctl does not run: {e}")),
        }
    }

    /// Runs one of the server's programs to its end; panics with its output if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One of the server's programs, as the server's OS user.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.owner.is_some() {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(path);
            runuser
        } else {
            Command::new(path)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `immediate`: nothing to keep. The folder goes with `dir`.
        if let Err(why) = self.pg_ctl(&["-m", "immediate", "stop"]) {
            eprintln!("could not stop the test cluster: {why}");
        }
    }
}

/// The folder holding `initdb` and `pg_ctl`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(BIN_VAR) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "{BIN_VAR} names {}, which has no initdb",
                dir.display()
            ))
        };
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .map_err(|e| format!("{}: {e}", base.display()))?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no initdb under {}/*/bin", base.display()))
}

/// The `postgres` OS user's uid and gid.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .expect("running as root, the tests need a `postgres` OS user to run the server")
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
