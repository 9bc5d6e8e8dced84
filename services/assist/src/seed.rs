//! `assist seed`: realistic synthetic customers and merchant users, in bulk (a million customers take
//! about a minute on SQLite). Deterministic for a given `--seed`.

use std::time::Instant;

use anyhow::Context;
use assist_identity::domain::{
    MerchantApproval, NewPrincipal, Principal, PrincipalKind, Status, password,
};
use assist_identity::service::terms_of;

use crate::embedded::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    storage: Storage,
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Customers with names, emails and DE-- references.
    Customers(Amount),
    /// Merchant users of a few hundred merchants.
    MerchantUsers(Amount),
}

#[derive(clap::Args)]
struct Amount {
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: u64,
    /// Seed of the generator: the same seed gives the same people.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Every seeded principal signs in with this password.
pub const SEED_PASSWORD: &str = "seeded-password";

const FIRST_NAMES: &[&str] = &[
    "Anna", "Annie", "Anton", "Ben", "Berta", "Carl", "Carla", "Clara", "Daniel", "David", "Diana",
    "Elena", "Elias", "Emil", "Emma", "Erik", "Eva", "Felix", "Finn", "Frida", "Georg", "Greta",
    "Hanna", "Hans", "Ida", "Igor", "Ingrid", "Jakob", "Jan", "Jana", "Johanna", "Jonas", "Julia",
    "Karl", "Karin", "Klara", "Lara", "Lea", "Lena", "Leon", "Lina", "Lisa", "Luca", "Lukas",
    "Maja", "Marc", "Maria", "Marie", "Mark", "Marta", "Martin", "Max", "Mia", "Mila", "Nina",
    "Noah", "Nora", "Olaf", "Olga", "Oskar", "Paul", "Paula", "Peter", "Petra", "Philipp", "Rosa",
    "Ruth", "Sara", "Simon", "Sofia", "Stefan", "Susanne", "Theo", "Tim", "Tobias", "Ulla", "Ute",
    "Valentin", "Vera", "Viktor", "Walter", "Wanda", "Xaver", "Yusuf", "Zoe", "Ahmed", "Aisha",
    "Chen", "Fatima", "Hiro", "Ivan", "Kofi", "Li", "Mei", "Omar", "Priya", "Raj", "Sven", "Tariq",
    "Yuki",
];

const LAST_NAMES: &[&str] = &[
    "Albrecht",
    "Bauer",
    "Becker",
    "Berg",
    "Braun",
    "Busch",
    "Dietrich",
    "Engel",
    "Fischer",
    "Frank",
    "Friedrich",
    "Fuchs",
    "Graf",
    "Hahn",
    "Hartmann",
    "Hoffmann",
    "Hofmann",
    "Huber",
    "Jung",
    "Kaiser",
    "Keller",
    "Klein",
    "Koch",
    "Kraus",
    "Krause",
    "Kuhn",
    "Lang",
    "Lange",
    "Lehmann",
    "Lorenz",
    "Ludwig",
    "Maier",
    "Martin",
    "Mayer",
    "Meier",
    "Meyer",
    "Moeller",
    "Mueller",
    "Neumann",
    "Otto",
    "Peters",
    "Pohl",
    "Richter",
    "Roth",
    "Sauer",
    "Schaefer",
    "Schmid",
    "Schmidt",
    "Schmitt",
    "Schneider",
    "Scholz",
    "Schreiber",
    "Schroeder",
    "Schubert",
    "Schulz",
    "Schwarz",
    "Seidel",
    "Simon",
    "Sommer",
    "Stein",
    "Vogel",
    "Vogt",
    "Wagner",
    "Walter",
    "Weber",
    "Werner",
    "Winkler",
    "Wolf",
    "Zimmermann",
    "Novak",
    "Rossi",
    "Garcia",
    "Silva",
    "Smith",
    "Jones",
    "Brown",
    "Nguyen",
    "Kim",
    "Tanaka",
    "Kowalski",
    "Ivanov",
    "Andersen",
    "Nielsen",
    "Larsen",
    "Jansen",
    "Dubois",
    "Moreau",
    "Laurent",
    "Costa",
    "Ferrari",
    "Russo",
];

const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "shop.example",
];

const MERCHANTS: &[&str] = &[
    "Spryker",
    "Sony Experts",
    "Budget Cameras",
    "Video King",
    "Office King",
    "Computer Experts",
    "Restrictions Merchant",
    "Green Garden",
    "Blue Sports",
    "Red Kitchen",
    "Tech Planet",
    "Home Comfort",
];

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let identity = args.storage.identity().await?;
    let store = identity.store();
    let hash = password::hash(SEED_PASSWORD)?;
    let started = Instant::now();
    let (amount, kind) = match &args.what {
        What::Customers(amount) => (amount, "customers"),
        What::MerchantUsers(amount) => (amount, "merchant users"),
    };
    let mut rng = Rng(amount.seed);
    // Every run gets its own serial range, so repeated seeding never collides on email or reference.
    let first_serial = store
        .reserve_sequence("customer_reference", amount.count as i64)
        .await
        .context("reserving serial numbers")?;
    const BATCH: u64 = 5_000;
    let mut done = 0;
    while done < amount.count {
        let size = BATCH.min(amount.count - done);
        let now = assist_runtime::time::now_us();
        let batch: Vec<(NewPrincipal, Vec<String>)> = (0..size)
            .map(|i| {
                let serial = first_serial + (done + i) as i64;
                let first = rng.pick(FIRST_NAMES);
                let last = rng.pick(LAST_NAMES);
                let domain = rng.pick(DOMAINS);
                let email = format!(
                    "{}.{}.{serial}@{domain}",
                    first.to_lowercase(),
                    last.to_lowercase()
                );
                let (kind, scope) = match &args.what {
                    What::Customers(_) => (
                        PrincipalKind::Customer {
                            customer_reference: format!(
                                "{}{serial}",
                                identity.settings().customer_reference_prefix
                            ),
                            first_name: first.into(),
                            last_name: last.into(),
                        },
                        "customer",
                    ),
                    What::MerchantUsers(_) => {
                        let merchant = (rng.next() % 300) as usize;
                        let name = MERCHANTS[merchant % MERCHANTS.len()];
                        let name = if merchant < MERCHANTS.len() {
                            name.to_owned()
                        } else {
                            format!("{name} {merchant}")
                        };
                        (
                            PrincipalKind::MerchantUser {
                                merchant_id: format!("MER{merchant:03}"),
                                merchant_name: name,
                                merchant_approval: if merchant.is_multiple_of(17) {
                                    MerchantApproval::Waiting
                                } else {
                                    MerchantApproval::Approved
                                },
                                first_name: first.into(),
                                last_name: last.into(),
                            },
                            "merchant_user",
                        )
                    }
                };
                let status = if rng.next().is_multiple_of(50) {
                    Status::Blocked
                } else {
                    Status::Active
                };
                let principal = Principal {
                    id: uuid::Uuid::now_v7().to_string(),
                    status,
                    email,
                    scope: scope.into(),
                    kind,
                    created_at_us: now,
                    updated_at_us: now,
                };
                let terms = terms_of(&principal);
                (
                    NewPrincipal {
                        principal,
                        password_hash: Some(hash.clone()),
                    },
                    terms,
                )
            })
            .collect();
        store.create_principals(&batch).await?;
        done += size;
        if done.is_multiple_of(100_000) || done == amount.count {
            eprintln!(
                "  {done} {kind} ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    store.analyze().await?;
    println!(
        "seeded {} {kind} in {:.1}s; they sign in with the password {SEED_PASSWORD:?}",
        amount.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
