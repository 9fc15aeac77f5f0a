//! [`Pki`]: a certificate authority and a server certificate for
//! `127.0.0.1`, generated with rcgen into a test's directory, for running a
//! coordinator with TLS.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// PEM files of one CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA's certificate: what clients trust (`--ca-cert`).
    pub ca_cert: PathBuf,
    /// The server's certificate, for `--tls-cert`.
    pub server_cert: PathBuf,
    /// The server's private key, for `--tls-key`.
    pub server_key: PathBuf,
}

impl Pki {
    /// Generates a CA named `name` and a certificate for `127.0.0.1` and
    /// `localhost` signed by it, written as `DIR/NAME-ca.pem`,
    /// `DIR/NAME-server.pem` and `DIR/NAME-server-key.pem`.
    pub fn generate(dir: &Path, name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, format!("quorum test CA {name}"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("an IP address")));
        params.distinguished_name.push(DnType::CommonName, "quorum-server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca_params, ca_key);
        let server_cert = params.signed_by(&server_key, &issuer).expect("sign the server certificate");

        let write = |file: String, text: String| {
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
            path
        };
        Pki {
            ca_cert: write(format!("{name}-ca.pem"), ca_cert.pem()),
            server_cert: write(format!("{name}-server.pem"), server_cert.pem()),
            server_key: write(format!("{name}-server-key.pem"), server_key.serialize_pem()),
        }
    }
}
