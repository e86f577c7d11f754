use super::*;

fn temp_home() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    (dir, home)
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_key_config_and_private_dirs() {
    let (_dir, home) = temp_home();
    assert!(!home.is_initialized());

    let outcome = home.init(false).unwrap();
    assert!(outcome.created);
    assert_eq!(outcome.previous_did, None);
    assert!(outcome.did.starts_with("did:key:z6Mk"), "{}", outcome.did);
    assert!(home.is_initialized());

    let key = home.root().join("keys/identity.key");
    assert_eq!(mode_of(&key), 0o600);
    assert_eq!(mode_of(&home.root().join("keys")), 0o700);
    let seed = fs::read_to_string(&key).unwrap();
    assert_eq!(seed.trim().len(), 64);
    assert!(seed.trim().bytes().all(|b| b.is_ascii_hexdigit()));

    let config: Config =
        toml::from_str(&fs::read_to_string(home.root().join("config.toml")).unwrap()).unwrap();
    assert_eq!(config.did, outcome.did);
    assert_eq!(config.env, "local");
    assert!(config.created_at > 0);

    assert_eq!(home.did().unwrap(), outcome.did);
}

#[test]
fn init_is_idempotent_without_force() {
    let (_dir, home) = temp_home();
    let first = home.init(false).unwrap();
    let second = home.init(false).unwrap();
    assert!(!second.created);
    assert_eq!(second.did, first.did);
    assert_eq!(second.previous_did, None);
}

#[test]
fn init_force_replaces_key_and_reports_old_did() {
    let (_dir, home) = temp_home();
    let first = home.init(false).unwrap();
    let forced = home.init(true).unwrap();
    assert!(forced.created);
    assert_ne!(forced.did, first.did);
    assert_eq!(forced.previous_did.as_deref(), Some(first.did.as_str()));
    assert_eq!(home.did().unwrap(), forced.did);
    assert_eq!(mode_of(&home.root().join("keys/identity.key")), 0o600);
}

#[test]
fn init_repairs_missing_config() {
    let (_dir, home) = temp_home();
    let first = home.init(false).unwrap();
    fs::remove_file(home.root().join("config.toml")).unwrap();
    let again = home.init(false).unwrap();
    assert!(!again.created);
    let text = fs::read_to_string(home.root().join("config.toml")).unwrap();
    assert!(text.contains(&first.did));
}

#[test]
fn keypair_round_trips_through_the_seed_file() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let a = home.keypair().unwrap();
    let b = home.keypair().unwrap();
    assert_eq!(a.seed(), b.seed());
}

#[test]
fn uninitialized_home_reports_not_initialized() {
    let (_dir, home) = temp_home();
    assert!(matches!(home.did(), Err(HomeError::NotInitialized { .. })));
}

#[test]
fn corrupt_key_is_rejected_and_kept_without_force() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let key = home.root().join("keys/identity.key");
    write_atomic(&key, b"not hex\n", 0o600).unwrap();
    assert!(matches!(home.keypair(), Err(HomeError::InvalidKey { .. })));
    assert!(matches!(
        home.init(false),
        Err(HomeError::InvalidKey { .. })
    ));
    let forced = home.init(true).unwrap();
    assert!(forced.created);
    assert_eq!(forced.previous_did, None);
}

#[test]
fn world_readable_key_is_refused() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let key = home.root().join("keys/identity.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        home.keypair(),
        Err(HomeError::InsecureKey { mode: 0o644, .. })
    ));
}

#[test]
fn steward_info_round_trip_and_removal() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    assert_eq!(home.read_steward_info().unwrap(), None);
    let info = StewardInfo {
        url: "http://127.0.0.1:9100".into(),
        pid: 1234,
        started_at: 1_767_225_600,
    };
    home.write_steward_info(&info).unwrap();
    assert_eq!(home.read_steward_info().unwrap(), Some(info));
    home.remove_steward_info();
    assert_eq!(home.read_steward_info().unwrap(), None);
    // Removing twice is fine.
    home.remove_steward_info();
}

#[test]
fn malformed_steward_info_is_an_error() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    fs::write(home.root().join("steward.json"), "{").unwrap();
    assert!(matches!(
        home.read_steward_info(),
        Err(HomeError::InvalidJsonFile { .. })
    ));
}

#[test]
fn token_is_saved_private_and_trimmed() {
    let (_dir, home) = temp_home();
    assert_eq!(home.load_token().unwrap(), None);
    home.save_token("  spl_local_sa_abc_secret\n").unwrap();
    assert_eq!(mode_of(&home.root().join("token")), 0o600);
    assert_eq!(
        home.load_token().unwrap().as_deref(),
        Some("spl_local_sa_abc_secret")
    );
    home.save_token("spl_local_sa_abc_other").unwrap();
    assert_eq!(
        home.load_token().unwrap().as_deref(),
        Some("spl_local_sa_abc_other")
    );
}

#[test]
fn bad_tokens_are_rejected() {
    let (_dir, home) = temp_home();
    assert!(matches!(
        home.save_token("  "),
        Err(HomeError::InvalidToken(_))
    ));
    assert!(matches!(
        home.save_token("a b"),
        Err(HomeError::InvalidToken(_))
    ));
}

#[test]
fn atomic_write_leaves_no_temporary_files() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    home.save_token("t").unwrap();
    let leftovers: Vec<_> = fs::read_dir(home.root())
        .unwrap()
        .chain(fs::read_dir(home.root().join("keys")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn published_web(home: &Home, keys: &[(&str, &Keypair)], current: &str) -> PublishedIdentity {
    let published = PublishedIdentity {
        did: "did:web:spl.example.com".into(),
        method: "web".into(),
        directory: None,
        keys: keys
            .iter()
            .map(|(f, k)| (f.to_string(), k.did_key()["did:key:".len()..].to_string()))
            .collect(),
        current: current.into(),
        compromised: vec![],
        head: None,
        rotation_keys: vec![],
        handles: vec![],
        namespaces: vec![],
        endpoint: None,
        endpoint_auto: false,
    };
    home.publish(&published).unwrap();
    published
}

#[test]
fn a_rotation_interrupted_after_its_commit_point_is_finished_on_load() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let old = home.keypair().unwrap();
    published_web(&home, &[("key-1", &old)], "key-1");
    assert_eq!(&*home.identity().unwrap().signer, old.did_key());

    // identity.json names the next key, and then the process died.
    let next = home.next_keypair().unwrap();
    assert_eq!(
        home.next_keypair().unwrap().did_key(),
        next.did_key(),
        "kept"
    );
    published_web(&home, &[("key-1", &old), ("key-2", &next)], "key-2");
    let identity = home.identity().unwrap();
    assert_eq!(&*identity.signer, next.did_key());
    assert_eq!(&*identity.did, "did:web:spl.example.com");
    assert_eq!(identity.keys.to_vec(), vec![next.did_key(), old.did_key()]);
    assert_eq!(home.keypair().unwrap().did_key(), next.did_key());
    assert!(home.root().join("keys/retired-key-1.key").is_file());
    assert!(!home.root().join("keys/next.key").exists());

    // A published key that is neither the key file nor the pending one is refused.
    let stranger = Keypair::generate();
    published_web(&home, &[("key-1", &stranger)], "key-1");
    assert!(matches!(home.identity(), Err(HomeError::InvalidKey { .. })));
}

#[test]
fn forcing_a_new_key_drops_the_published_identity() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let key = home.keypair().unwrap();
    published_web(&home, &[("key-1", &key)], "key-1");
    assert_eq!(home.did().unwrap(), "did:web:spl.example.com");
    let outcome = home.init(true).unwrap();
    assert_eq!(
        outcome.previous_did.as_deref(),
        Some("did:web:spl.example.com")
    );
    assert!(home.published().unwrap().is_none());
    assert_eq!(home.did().unwrap(), outcome.did);
}

#[test]
fn a_next_key_left_equal_to_the_signing_key_is_replaced() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    let current = home.keypair().unwrap();
    // What a crash after the swap but before removing the file would have left.
    write_atomic(
        &home.root().join("keys/next.key"),
        seed_text(&current).as_bytes(),
        SECRET_FILE_MODE,
    )
    .unwrap();
    let next = home.next_keypair().unwrap();
    assert_ne!(next.did_key(), current.did_key());
    assert_eq!(home.next_keypair().unwrap().did_key(), next.did_key());
    assert_eq!(home.replace_key("key-1").unwrap().did_key(), next.did_key());
    assert_eq!(home.keypair().unwrap().did_key(), next.did_key());
    assert!(!home.root().join("keys/next.key").exists());
}

#[test]
fn the_consent_section_is_read_and_survives_a_new_identity() {
    let (_dir, home) = temp_home();
    home.init(false).unwrap();
    assert!(!home.l0_requires_acceptance().unwrap());
    let path = home.root().join("config.toml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("[consent]"), "{text}");
    fs::write(
        &path,
        format!("{text}\n[consent]\nl0_requires_acceptance = true\n"),
    )
    .unwrap();
    assert!(home.l0_requires_acceptance().unwrap());
    home.init(true).unwrap();
    assert!(home.l0_requires_acceptance().unwrap());
}
