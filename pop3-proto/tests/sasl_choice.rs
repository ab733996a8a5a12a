//! Choosing the client's login method: ranking, TLS gating, the opt-in, tokens, APOP, forced
//! methods, the errors, and a property over every offer.

use pop3_proto::sasl::ClientCredentials;
use pop3_proto::sasl::choose::{
    Candidate, Channel, ChoiceError, Credential, Exposure, Have, LoginMethod, Offer, Preference,
    Ranking, Refusal, Refused, choose, rank,
};
use pop3_proto::{Capability, Mechanism, Secret, Timestamp};
use proptest::prelude::*;

use LoginMethod::*;

fn mech(name: &str) -> Mechanism {
    Mechanism::new(name).unwrap()
}

/// An offer of SASL mechanisms by name, plus USER and APOP as asked.
fn offer(sasl: &[&str], user: bool, apop: bool) -> Offer {
    Offer {
        sasl: sasl.iter().map(|m| mech(m)).collect(),
        user,
        apop,
    }
}

/// Everything this crate implements, and a mechanism it does not.
fn everything() -> Offer {
    offer(
        &[
            "PLAIN",
            "LOGIN",
            "CRAM-MD5",
            "SCRAM-SHA-256",
            "XOAUTH2",
            "OAUTHBEARER",
            "GSSAPI",
        ],
        true,
        true,
    )
}

fn auto(offer: &Offer, have: Have, channel: Channel) -> Result<LoginMethod, ChoiceError> {
    choose(offer, have, channel, Preference::Auto)
}

fn forced(
    offer: &Offer,
    have: Have,
    channel: Channel,
    method: LoginMethod,
) -> Result<LoginMethod, ChoiceError> {
    choose(offer, have, channel, Preference::Forced(method))
}

// --- Ranking -------------------------------------------------------------------------------

#[test]
fn password_ranking_is_scram_cram_plain_user_login() {
    let tls = Channel::tls();
    let mut names = vec!["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"];
    let mut user = true;
    // Remove the winner each time: the next one in the order wins.
    for expected in [ScramSha256, CramMd5, Plain, UserPass, Login] {
        let o = offer(&names, user, true);
        assert_eq!(auto(&o, Have::PASSWORD, tls), Ok(expected), "{o:?}");
        match expected {
            UserPass => user = false,
            m => names.retain(|n| *n != m.name()),
        }
    }
    assert!(names.is_empty() && !user);
}

#[test]
fn ranking_order_does_not_depend_on_the_servers_order() {
    let a = offer(&["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"], true, false);
    let b = offer(&["SCRAM-SHA-256", "PLAIN", "CRAM-MD5"], true, false);
    for o in [&a, &b] {
        let r = rank(o, Have::PASSWORD, Channel::tls());
        assert_eq!(r.usable, [ScramSha256, CramMd5, Plain, UserPass]);
        assert!(r.refused.is_empty());
    }
}

#[test]
fn mechanism_names_are_case_insensitive() {
    let o = offer(&["scram-sha-256", "plain"], false, false);
    assert_eq!(auto(&o, Have::PASSWORD, Channel::tls()), Ok(ScramSha256));
}

#[test]
fn with_both_secrets_scram_then_tokens_then_cram() {
    let o = everything();
    let r = rank(&o, Have::BOTH, Channel::tls());
    assert_eq!(
        r.usable,
        [
            ScramSha256,
            OAuthBearer,
            XOAuth2,
            CramMd5,
            Plain,
            UserPass,
            Login
        ]
    );
    assert_eq!(r.usable, LoginMethod::PREFERENCE);
}

// --- TLS gating and the opt-in --------------------------------------------------------------

#[test]
fn plaintext_password_methods_need_tls() {
    let o = offer(&["PLAIN", "LOGIN"], true, false);
    let err = auto(&o, Have::PASSWORD, Channel::plaintext()).unwrap_err();
    let ChoiceError::NoneAcceptable { refused } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        refused,
        &[
            Refused {
                candidate: Candidate::Method(Plain),
                reason: Refusal::NeedsTls(Exposure::Password),
            },
            Refused {
                candidate: Candidate::Method(UserPass),
                reason: Refusal::NeedsTls(Exposure::Password),
            },
            Refused {
                candidate: Candidate::Method(Login),
                reason: Refusal::NeedsTls(Exposure::Password),
            },
        ]
    );
    assert_eq!(
        err.to_string(),
        "no acceptable login method: PLAIN needs TLS (it sends the password readable); \
         USER/PASS needs TLS (it sends the password readable); \
         LOGIN needs TLS (it sends the password readable)"
    );
    // The same over TLS: PLAIN.
    assert_eq!(auto(&o, Have::PASSWORD, Channel::tls()), Ok(Plain));
}

#[test]
fn without_tls_a_proof_method_wins_and_plaintext_ones_are_refused() {
    let o = offer(&["PLAIN", "CRAM-MD5"], true, false);
    let r = rank(&o, Have::PASSWORD, Channel::plaintext());
    assert_eq!(r.usable, [CramMd5]);
    assert_eq!(r.refused.len(), 2);
    assert_eq!(auto(&o, Have::PASSWORD, Channel::plaintext()), Ok(CramMd5));
    let o = offer(&["SCRAM-SHA-256"], true, false);
    assert_eq!(
        auto(&o, Have::PASSWORD, Channel::plaintext()),
        Ok(ScramSha256)
    );
}

#[test]
fn the_opt_in_allows_plaintext_passwords_without_tls() {
    let o = offer(&["PLAIN"], true, false);
    let allowed = Channel::plaintext_allowed();
    assert_eq!(auto(&o, Have::PASSWORD, allowed), Ok(Plain));
    let o = offer(&[], true, false);
    assert_eq!(auto(&o, Have::PASSWORD, allowed), Ok(UserPass));
    // The opt-in does not change the order: a proof method still wins.
    let o = offer(&["PLAIN", "CRAM-MD5"], true, false);
    assert_eq!(auto(&o, Have::PASSWORD, allowed), Ok(CramMd5));
    // TLS with or without the opt-in is the same.
    let both = Channel {
        tls: true,
        allow_plaintext: true,
    };
    assert_eq!(
        rank(&everything(), Have::BOTH, both),
        rank(&everything(), Have::BOTH, Channel::tls())
    );
}

#[test]
fn channel_permits() {
    for exposure in [Exposure::Password, Exposure::BearerToken] {
        assert!(exposure.needs_tls());
        assert!(!Channel::plaintext().permits(exposure));
        assert!(Channel::plaintext_allowed().permits(exposure));
        assert!(Channel::tls().permits(exposure));
    }
    assert!(!Exposure::Proof.needs_tls());
    assert!(Channel::plaintext().permits(Exposure::Proof));
    assert_eq!(
        Channel::default(),
        Channel::plaintext(),
        "no opt-in by default"
    );
}

// --- Tokens ---------------------------------------------------------------------------------

#[test]
fn token_prefers_oauthbearer_over_xoauth2() {
    let o = offer(&["XOAUTH2", "OAUTHBEARER"], false, false);
    assert_eq!(auto(&o, Have::TOKEN, Channel::tls()), Ok(OAuthBearer));
    let o = offer(&["XOAUTH2"], false, false);
    assert_eq!(auto(&o, Have::TOKEN, Channel::tls()), Ok(XOAuth2));
}

#[test]
fn token_methods_need_tls_or_the_opt_in() {
    let o = offer(&["XOAUTH2", "OAUTHBEARER"], false, false);
    let err = auto(&o, Have::TOKEN, Channel::plaintext()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no acceptable login method: OAUTHBEARER needs TLS (it sends the bearer token readable); \
         XOAUTH2 needs TLS (it sends the bearer token readable)"
    );
    assert_eq!(
        auto(&o, Have::TOKEN, Channel::plaintext_allowed()),
        Ok(OAuthBearer)
    );
}

#[test]
fn a_token_alone_never_picks_a_password_method_and_vice_versa() {
    let r = rank(&everything(), Have::TOKEN, Channel::tls());
    assert_eq!(r.usable, [OAuthBearer, XOAuth2]);
    assert!(r.refused.contains(&Refused {
        candidate: Candidate::Method(ScramSha256),
        reason: Refusal::NeedsPassword,
    }));
    let r = rank(&everything(), Have::PASSWORD, Channel::tls());
    assert_eq!(r.usable, [ScramSha256, CramMd5, Plain, UserPass, Login]);
    assert!(r.refused.contains(&Refused {
        candidate: Candidate::Method(XOAuth2),
        reason: Refusal::NeedsToken,
    }));
    // Nothing to log in with: nothing is usable.
    assert!(
        rank(&everything(), Have::default(), Channel::tls())
            .usable
            .is_empty()
    );
}

#[test]
fn both_secrets_without_tls_fall_to_cram_md5() {
    let o = offer(&["OAUTHBEARER", "CRAM-MD5", "PLAIN"], true, false);
    assert_eq!(auto(&o, Have::BOTH, Channel::plaintext()), Ok(CramMd5));
    assert_eq!(auto(&o, Have::BOTH, Channel::tls()), Ok(OAuthBearer));
}

// --- APOP -----------------------------------------------------------------------------------

#[test]
fn apop_is_never_chosen_automatically() {
    let o = offer(&[], false, true);
    for channel in [
        Channel::tls(),
        Channel::plaintext(),
        Channel::plaintext_allowed(),
    ] {
        let err = auto(&o, Have::PASSWORD, channel).unwrap_err();
        assert_eq!(
            err,
            ChoiceError::NoneAcceptable {
                refused: vec![Refused {
                    candidate: Candidate::Method(Apop),
                    reason: Refusal::OnlyWhenAsked,
                }]
            }
        );
        assert_eq!(
            err.to_string(),
            "no acceptable login method: APOP is used only when asked for"
        );
    }
    // Even USER/PASS over TLS wins over APOP; without TLS it is refused, APOP still not taken.
    let o = offer(&[], true, true);
    assert_eq!(auto(&o, Have::PASSWORD, Channel::tls()), Ok(UserPass));
    assert!(auto(&o, Have::PASSWORD, Channel::plaintext()).is_err());
}

#[test]
fn apop_when_asked_for() {
    let o = offer(&[], false, true);
    let apop = Preference::from_url_auth("+APOP").unwrap();
    assert_eq!(apop, Preference::Forced(Apop));
    // APOP sends only a digest: no TLS needed.
    assert_eq!(
        choose(&o, Have::PASSWORD, Channel::plaintext(), apop),
        Ok(Apop)
    );
    assert_eq!(
        choose(&o, Have::TOKEN, Channel::tls(), apop),
        Err(ChoiceError::ForcedUnusable {
            method: Apop,
            reason: Refusal::NeedsPassword,
        })
    );
    // No timestamp in the greeting: not offered.
    let o = offer(&["PLAIN"], true, false);
    let err = choose(&o, Have::PASSWORD, Channel::tls(), apop).unwrap_err();
    assert_eq!(
        err.to_string(),
        "APOP was asked for, but the server does not offer it (it offers PLAIN, USER/PASS)"
    );
}

// --- Forced methods -------------------------------------------------------------------------

#[test]
fn forced_offered_is_honoured_even_if_weaker() {
    let o = everything();
    for m in LoginMethod::PREFERENCE {
        assert_eq!(forced(&o, Have::BOTH, Channel::tls(), m), Ok(m), "{m}");
    }
    assert_eq!(forced(&o, Have::PASSWORD, Channel::tls(), Login), Ok(Login));
}

#[test]
fn forced_not_offered_is_an_error_naming_the_offer() {
    let o = offer(&["SCRAM-SHA-256", "GSSAPI"], true, false);
    let err = forced(&o, Have::PASSWORD, Channel::tls(), Plain).unwrap_err();
    assert_eq!(
        err,
        ChoiceError::ForcedNotOffered {
            method: Plain,
            offered: vec![
                Candidate::Method(ScramSha256),
                Candidate::Unsupported(mech("GSSAPI")),
                Candidate::Method(UserPass),
            ],
        }
    );
    assert_eq!(
        err.to_string(),
        "PLAIN was asked for, but the server does not offer it \
         (it offers SCRAM-SHA-256, GSSAPI, USER/PASS)"
    );
    let err = forced(&Offer::default(), Have::PASSWORD, Channel::tls(), UserPass).unwrap_err();
    assert_eq!(
        err.to_string(),
        "USER/PASS was asked for, but the server does not offer it (it offers no login method)"
    );
}

#[test]
fn forced_unusable_with_these_credentials_is_an_error() {
    let o = everything();
    assert_eq!(
        forced(&o, Have::PASSWORD, Channel::tls(), XOAuth2),
        Err(ChoiceError::ForcedUnusable {
            method: XOAuth2,
            reason: Refusal::NeedsToken,
        })
    );
    let err = forced(&o, Have::TOKEN, Channel::tls(), ScramSha256).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCRAM-SHA-256 was asked for, but it needs a password"
    );
}

#[test]
fn forced_plaintext_method_is_still_gated_on_tls() {
    let o = everything();
    for m in [Plain, Login, UserPass] {
        assert_eq!(
            forced(&o, Have::BOTH, Channel::plaintext(), m),
            Err(ChoiceError::ForcedUnusable {
                method: m,
                reason: Refusal::NeedsTls(Exposure::Password),
            })
        );
        assert_eq!(
            forced(&o, Have::BOTH, Channel::plaintext_allowed(), m),
            Ok(m)
        );
    }
    assert_eq!(
        forced(&o, Have::TOKEN, Channel::plaintext(), OAuthBearer),
        Err(ChoiceError::ForcedUnusable {
            method: OAuthBearer,
            reason: Refusal::NeedsTls(Exposure::BearerToken),
        })
    );
    assert_eq!(
        forced(&o, Have::PASSWORD, Channel::plaintext(), CramMd5),
        Ok(CramMd5)
    );
}

#[test]
fn url_auth_values() {
    assert_eq!(Preference::from_url_auth("*"), Ok(Preference::Auto));
    assert_eq!(Preference::default(), Preference::Auto);
    for (value, method) in [
        ("+APOP", Apop),
        ("+apop", Apop),
        ("USER", UserPass),
        ("PLAIN", Plain),
        ("login", Login),
        ("Cram-Md5", CramMd5),
        ("SCRAM-SHA-256", ScramSha256),
        ("XOAUTH2", XOAuth2),
        ("oauthbearer", OAuthBearer),
    ] {
        assert_eq!(
            Preference::from_url_auth(value),
            Ok(Preference::Forced(method)),
            "{value}"
        );
    }
    for value in ["GSSAPI", "APOP", "", "+", "PLAIN LOGIN", "SCRAM-SHA-1"] {
        assert_eq!(
            Preference::from_url_auth(value),
            Err(ChoiceError::UnknownMethod(value.to_string())),
            "{value:?}"
        );
    }
}

// --- Nothing acceptable ---------------------------------------------------------------------

#[test]
fn nothing_acceptable_names_every_offer_and_reason() {
    let o = offer(&["GSSAPI", "PLAIN", "XOAUTH2", "DIGEST-MD5"], true, true);
    let err = auto(&o, Have::PASSWORD, Channel::plaintext()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no acceptable login method: XOAUTH2 needs an OAuth token; \
         PLAIN needs TLS (it sends the password readable); \
         USER/PASS needs TLS (it sends the password readable); \
         APOP is used only when asked for; GSSAPI is not implemented; \
         DIGEST-MD5 is not implemented"
    );
    let ChoiceError::NoneAcceptable { refused } = err else {
        panic!()
    };
    assert_eq!(refused.len(), 6);
}

#[test]
fn an_empty_offer_says_so() {
    let err = auto(&Offer::default(), Have::BOTH, Channel::tls()).unwrap_err();
    assert_eq!(err, ChoiceError::NoneAcceptable { refused: vec![] });
    assert_eq!(
        err.to_string(),
        "no acceptable login method: the server offers none"
    );
}

// --- The readable-password helper -----------------------------------------------------------

#[test]
fn exposure_of_each_method() {
    for m in [Plain, Login, UserPass] {
        assert_eq!(m.exposure(), Exposure::Password, "{m}");
        assert!(m.sends_password_readable(), "{m}");
    }
    for m in [CramMd5, ScramSha256, Apop] {
        assert_eq!(m.exposure(), Exposure::Proof, "{m}");
        assert!(!m.sends_password_readable(), "{m}");
    }
    for m in [XOAuth2, OAuthBearer] {
        assert_eq!(m.exposure(), Exposure::BearerToken, "{m}");
        assert!(!m.sends_password_readable(), "{m}");
        assert_eq!(m.credential(), Credential::Token);
    }
}

// --- Types ----------------------------------------------------------------------------------

#[test]
fn offer_from_capabilities() {
    let caps = vec![
        Capability::Top,
        Capability::Sasl(vec![mech("PLAIN")]),
        Capability::User,
        Capability::Sasl(vec![mech("SCRAM-SHA-256"), mech("PLAIN")]),
    ];
    let ts = Timestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap();
    let o = Offer::from_capabilities(Some(&caps), Some(&ts));
    assert_eq!(
        o.sasl,
        [mech("PLAIN"), mech("SCRAM-SHA-256"), mech("PLAIN")]
    );
    assert!(o.user && o.apop);
    assert_eq!(
        o.candidates(),
        [
            Candidate::Method(Plain),
            Candidate::Method(ScramSha256),
            Candidate::Method(UserPass),
            Candidate::Method(Apop),
        ]
    );
    // CAPA without USER: USER/PASS is not offered.
    let o = Offer::from_capabilities(Some(&[Capability::Top]), None);
    assert_eq!(o, Offer::default());
    // No CAPA at all (an RFC 1939 server): USER/PASS is assumed.
    let o = Offer::from_capabilities(None, None);
    assert_eq!(o, offer(&[], true, false));
    assert_eq!(auto(&o, Have::PASSWORD, Channel::tls()), Ok(UserPass));
}

#[test]
fn methods_and_mechanisms() {
    for m in LoginMethod::ALL {
        match m.mechanism() {
            Some(name) => {
                assert!(m.is_sasl());
                assert_eq!(name.as_str(), m.name());
                assert_eq!(LoginMethod::from_mechanism(&name), Some(m));
            }
            None => assert!(matches!(m, UserPass | Apop) && !m.is_sasl()),
        }
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(LoginMethod::from_mechanism(&mech("USER")), None);
    assert_eq!(LoginMethod::from_mechanism(&mech("APOP")), None);
    assert_eq!(LoginMethod::from_mechanism(&mech("GSSAPI")), None);
    assert!(!LoginMethod::PREFERENCE.contains(&Apop));
}

#[test]
fn client_credentials_match_the_method() {
    let s = || Secret::new("secret".to_string());
    for m in LoginMethod::ALL {
        let creds = m.client_credentials("alice", s(), Some("pop.example.com".into()), Some(995));
        match creds {
            Some(c) => {
                assert_eq!(LoginMethod::from(&c), m);
                if let ClientCredentials::OAuthBearer { host, port, .. } = &c {
                    assert_eq!(host.as_deref(), Some("pop.example.com"));
                    assert_eq!(*port, Some(995));
                }
            }
            None => assert!(!m.is_sasl()),
        }
    }
}

// --- Properties -----------------------------------------------------------------------------

const NAMES: [&str; 9] = [
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-256",
    "XOAUTH2",
    "OAUTHBEARER",
    "GSSAPI",
    "DIGEST-MD5",
    "SCRAM-SHA-1",
];

fn any_offer() -> impl Strategy<Value = Offer> {
    (
        proptest::collection::vec((0..NAMES.len(), any::<bool>()), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(names, user, apop)| Offer {
            sasl: names
                .into_iter()
                .map(|(i, lower)| {
                    let n = NAMES[i];
                    mech(&if lower {
                        n.to_ascii_lowercase()
                    } else {
                        n.to_string()
                    })
                })
                .collect(),
            user,
            apop,
        })
}

fn any_preference() -> impl Strategy<Value = Preference> {
    prop_oneof![
        Just(Preference::Auto),
        proptest::sample::select(LoginMethod::ALL.to_vec()).prop_map(Preference::Forced),
    ]
}

proptest! {
    #[test]
    fn the_choice_is_offered_usable_and_never_exposes_a_secret_without_consent(
        o in any_offer(),
        password in any::<bool>(),
        token in any::<bool>(),
        tls in any::<bool>(),
        allow_plaintext in any::<bool>(),
        preference in any_preference(),
    ) {
        let have = Have { password, token };
        let channel = Channel { tls, allow_plaintext };
        match choose(&o, have, channel, preference) {
            Ok(m) => {
                prop_assert!(o.offers(m), "{m} not offered by {o:?}");
                prop_assert!(have.has(m.credential()));
                if !tls && !allow_plaintext {
                    prop_assert!(!m.sends_password_readable(), "{m} without TLS");
                    prop_assert_eq!(m.exposure(), Exposure::Proof);
                }
                if m == Apop {
                    prop_assert_eq!(preference, Preference::Forced(Apop));
                }
                if let Preference::Forced(f) = preference {
                    prop_assert_eq!(m, f);
                }
            }
            Err(ChoiceError::NoneAcceptable { refused }) => {
                prop_assert_eq!(preference, Preference::Auto);
                // Every offered thing is named, once.
                let mut named: Vec<Candidate> = refused.iter().map(|r| r.candidate.clone()).collect();
                let mut offered = o.candidates();
                named.sort_by_key(|c| c.to_string());
                offered.sort_by_key(|c| c.to_string());
                prop_assert_eq!(named, offered);
            }
            Err(ChoiceError::ForcedNotOffered { method, .. }) => {
                prop_assert_eq!(preference, Preference::Forced(method));
                prop_assert!(!o.offers(method));
            }
            Err(ChoiceError::ForcedUnusable { method, .. }) => {
                prop_assert_eq!(preference, Preference::Forced(method));
                prop_assert!(o.offers(method));
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    #[test]
    fn auto_takes_the_first_acceptable_in_preference_order(
        o in any_offer(),
        password in any::<bool>(),
        token in any::<bool>(),
        tls in any::<bool>(),
        allow_plaintext in any::<bool>(),
    ) {
        let have = Have { password, token };
        let channel = Channel { tls, allow_plaintext };
        // The model: the rules written out plainly.
        let expected = LoginMethod::PREFERENCE.into_iter().find(|m| {
            o.offers(*m)
                && have.has(m.credential())
                && (tls || allow_plaintext || m.exposure() == Exposure::Proof)
        });
        let Ranking { usable, refused } = rank(&o, have, channel);
        prop_assert_eq!(usable.first().copied(), expected);
        prop_assert_eq!(choose(&o, have, channel, Preference::Auto).ok(), expected);
        // Usable and refused split the offer.
        prop_assert_eq!(usable.len() + refused.len(), o.candidates().len());
    }
}
