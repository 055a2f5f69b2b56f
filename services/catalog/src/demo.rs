//! Demo and benchmark data: a small browsable catalogue for `emporium up`,
//! and a fast bulk generator for load tests.

use kit::clock::now_millis;
use uuid::Uuid;

use crate::AppState;
use crate::categories;
use crate::domain::{Image, Money, NewCategory, NewProduct};
use crate::error::{CatalogError, Result};
use crate::products;
use crate::storage;
use crate::storage::products::ProductRecord;

/// Find the category with `slug`, creating it if missing.
async fn ensure_category(
    state: &AppState,
    name: &str,
    slug: &str,
    description: &str,
    parent: Option<Uuid>,
) -> Result<Uuid> {
    let input = NewCategory {
        name: name.into(),
        slug: slug.into(),
        description: description.into(),
        parent_id: parent.map(|p| p.to_string()),
    };
    match categories::create(state, &input).await {
        Ok(c) => Ok(c.id),
        Err(CatalogError::SlugTaken) => Ok(categories::get(state, slug).await?.category.id),
        Err(e) => Err(e),
    }
}

struct DemoProduct {
    sku: &'static str,
    name: &'static str,
    description: &'static str,
    cents: i64,
    stock: i64,
    category: usize,
}

const DEMO: &[DemoProduct] = &[
    DemoProduct {
        sku: "AUD-HP-100",
        name: "Wireless Over-Ear Headphones",
        description: "Closed-back headphones with active noise cancelling and 30 hours of battery.",
        cents: 12_900,
        stock: 25,
        category: 1,
    },
    DemoProduct {
        sku: "AUD-EB-200",
        name: "True Wireless Earbuds",
        description: "Pocket-sized earbuds with a charging case and touch controls.",
        cents: 7_900,
        stock: 40,
        category: 1,
    },
    DemoProduct {
        sku: "AUD-SP-300",
        name: "Portable Bluetooth Speaker",
        description: "Waterproof speaker with deep bass for the beach or the garden.",
        cents: 5_900,
        stock: 18,
        category: 1,
    },
    DemoProduct {
        sku: "AUD-TT-400",
        name: "Belt-Drive Turntable",
        description: "A record player with a built-in phono preamp.",
        cents: 24_900,
        stock: 5,
        category: 1,
    },
    DemoProduct {
        sku: "CMP-KB-100",
        name: "Mechanical Keyboard",
        description: "Tenkeyless keyboard with hot-swappable switches and a braided cable.",
        cents: 8_900,
        stock: 30,
        category: 2,
    },
    DemoProduct {
        sku: "CMP-MS-200",
        name: "Ergonomic Wireless Mouse",
        description: "A vertical mouse that keeps the wrist relaxed.",
        cents: 3_900,
        stock: 50,
        category: 2,
    },
    DemoProduct {
        sku: "CMP-MN-300",
        name: "27-inch 4K Monitor",
        description: "IPS panel with USB-C power delivery for a single-cable desk.",
        cents: 32_900,
        stock: 8,
        category: 2,
    },
    DemoProduct {
        sku: "CMP-HB-400",
        name: "USB-C Hub",
        description: "Seven ports: HDMI, Ethernet, SD card and three USB-A.",
        cents: 4_500,
        stock: 0,
        category: 2,
    },
    DemoProduct {
        sku: "ELC-CH-100",
        name: "Fast Wall Charger",
        description: "65 W GaN charger for laptops and phones.",
        cents: 2_900,
        stock: 60,
        category: 0,
    },
    DemoProduct {
        sku: "ELC-PB-200",
        name: "Power Bank 20000 mAh",
        description: "Charges a phone four times over; USB-C in and out.",
        cents: 3_500,
        stock: 35,
        category: 0,
    },
    DemoProduct {
        sku: "HOM-KT-100",
        name: "Electric Kettle",
        description: "1.7 litre stainless steel kettle with temperature control.",
        cents: 4_900,
        stock: 22,
        category: 3,
    },
    DemoProduct {
        sku: "HOM-CF-200",
        name: "Pour-Over Coffee Set",
        description: "Glass dripper, carafe and a hundred paper filters.",
        cents: 3_200,
        stock: 15,
        category: 3,
    },
    DemoProduct {
        sku: "HOM-KN-300",
        name: "Chef's Knife",
        description: "20 cm forged steel knife with a walnut handle.",
        cents: 6_900,
        stock: 12,
        category: 3,
    },
    DemoProduct {
        sku: "HOM-PN-400",
        name: "Cast Iron Skillet",
        description: "Pre-seasoned 26 cm pan for stove, oven and campfire.",
        cents: 3_900,
        stock: 20,
        category: 3,
    },
    DemoProduct {
        sku: "BOK-RS-100",
        name: "The Rust Programming Language",
        description: "The book on Rust, from ownership to async.",
        cents: 3_999,
        stock: 45,
        category: 4,
    },
    DemoProduct {
        sku: "BOK-DS-200",
        name: "Designing Data-Intensive Applications",
        description: "Reliable, scalable and maintainable systems explained.",
        cents: 4_599,
        stock: 30,
        category: 4,
    },
    DemoProduct {
        sku: "BOK-CK-300",
        name: "Salt, Fat, Acid, Heat",
        description: "A cookbook about the four elements of good cooking.",
        cents: 3_000,
        stock: 10,
        category: 4,
    },
    DemoProduct {
        sku: "OUT-TN-100",
        name: "Two-Person Tent",
        description: "Lightweight backpacking tent that pitches in five minutes.",
        cents: 18_900,
        stock: 7,
        category: 5,
    },
    DemoProduct {
        sku: "OUT-SB-200",
        name: "Down Sleeping Bag",
        description: "Comfortable to minus five degrees; packs to the size of a loaf.",
        cents: 15_900,
        stock: 9,
        category: 5,
    },
    DemoProduct {
        sku: "OUT-BT-300",
        name: "Insulated Water Bottle",
        description: "Keeps drinks cold for a day and hot for twelve hours.",
        cents: 2_400,
        stock: 80,
        category: 5,
    },
];

/// Fill an empty catalogue with a small demo one (a few categories, one a
/// subcategory, and twenty products with stock). Does nothing if any
/// product exists. Returns how many products it created.
pub async fn seed(state: &AppState) -> Result<usize> {
    if storage::products::any(state.db.pool()).await? {
        return Ok(0);
    }
    let electronics = ensure_category(
        state,
        "Electronics",
        "electronics",
        "Gadgets and gear.",
        None,
    )
    .await?;
    let audio = ensure_category(
        state,
        "Audio",
        "audio",
        "Headphones, speakers and turntables.",
        Some(electronics),
    )
    .await?;
    let computers = ensure_category(
        state,
        "Computers",
        "computers",
        "Keyboards, mice, monitors.",
        Some(electronics),
    )
    .await?;
    let home = ensure_category(
        state,
        "Home & Kitchen",
        "home-and-kitchen",
        "For cooks and coffee lovers.",
        None,
    )
    .await?;
    let books = ensure_category(state, "Books", "books", "Read something good.", None).await?;
    let outdoors =
        ensure_category(state, "Outdoors", "outdoors", "Camping and hiking.", None).await?;
    let category_ids = [electronics, audio, computers, home, books, outdoors];
    for p in DEMO {
        let input = NewProduct {
            sku: p.sku.into(),
            name: p.name.into(),
            description: p.description.into(),
            price: Money {
                amount: p.cents,
                currency: "USD".into(),
            },
            stock: p.stock,
            category_id: category_ids[p.category].to_string(),
            images: vec![Image {
                url: format!(
                    "https://images.emporium.example/{}.jpg",
                    p.sku.to_lowercase()
                ),
                alt: p.name.into(),
            }],
            is_active: true,
        };
        match products::create(state, &input).await {
            Ok(_) | Err(CatalogError::SkuTaken) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(products = DEMO.len(), "demo catalogue seeded");
    Ok(DEMO.len())
}

const ADJECTIVES: &[&str] = &[
    "Compact",
    "Deluxe",
    "Ergonomic",
    "Wireless",
    "Rugged",
    "Classic",
    "Smart",
    "Portable",
    "Premium",
    "Vintage",
    "Modern",
    "Silent",
    "Foldable",
    "Heated",
    "Magnetic",
    "Solar",
];
const MATERIALS: &[&str] = &[
    "Bamboo", "Steel", "Oak", "Ceramic", "Leather", "Carbon", "Wool", "Glass", "Copper", "Linen",
];
const NOUNS: &[&str] = &[
    "Headphones",
    "Keyboard",
    "Lamp",
    "Backpack",
    "Kettle",
    "Chair",
    "Speaker",
    "Notebook",
    "Jacket",
    "Monitor",
    "Bottle",
    "Blender",
    "Tent",
    "Watch",
    "Camera",
    "Desk",
    "Mug",
    "Router",
];

/// A tiny deterministic generator: bulk data needs variety, not secrecy.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// Rows per INSERT statement (13 parameters each, well under both
/// databases' limits) and statements per transaction.
const ROWS_PER_STATEMENT: usize = 1_000;
const STATEMENTS_PER_TRANSACTION: usize = 5;

/// Insert `n` generated products (for benchmarks) in large multi-row
/// batches, a few batches per transaction, spread over a handful of
/// categories. No events are published for them. Returns `n`.
pub async fn seed_bulk(state: &AppState, n: usize) -> Result<usize> {
    let root = ensure_category(state, "Bulk", "bulk", "Generated products.", None).await?;
    let mut category_ids = vec![root];
    for (name, slug) in [
        ("Bulk Audio", "bulk-audio"),
        ("Bulk Home", "bulk-home"),
        ("Bulk Outdoors", "bulk-outdoors"),
        ("Bulk Office", "bulk-office"),
    ] {
        category_ids
            .push(ensure_category(state, name, slug, "Generated products.", Some(root)).await?);
    }
    let leaf = ensure_category(
        state,
        "Bulk Headphones",
        "bulk-headphones",
        "Generated products.",
        Some(category_ids[1]),
    )
    .await?;
    category_ids.push(leaf);

    let run = Uuid::now_v7().simple().to_string()[24..].to_uppercase();
    let mut rng = XorShift(now_millis() as u64 | 1);
    let started = now_millis();
    let mut made = 0usize;
    while made < n {
        let mut tx = state.db.begin().await?;
        for _ in 0..STATEMENTS_PER_TRANSACTION {
            if made >= n {
                break;
            }
            let rows = ROWS_PER_STATEMENT.min(n - made);
            let batch: Vec<ProductRecord> = (made..made + rows)
                .map(|i| {
                    let adjective = rng.pick(ADJECTIVES);
                    let material = rng.pick(MATERIALS);
                    let noun = rng.pick(NOUNS);
                    let rating_count = rng.below(41) as i64;
                    let rating_sum = rating_count + (rng.below(4 * rating_count as u64 + 1) as i64);
                    let created_at = started - i as i64;
                    ProductRecord {
                        id: Uuid::now_v7(),
                        sku: format!("BULK-{run}-{i:07}"),
                        name: format!("{adjective} {material} {noun} {i}"),
                        description: format!(
                            "A {} {} {} made of {}, generated for load tests.",
                            adjective.to_lowercase(),
                            rng.pick(ADJECTIVES).to_lowercase(),
                            noun.to_lowercase(),
                            material.to_lowercase()
                        ),
                        price: Money {
                            amount: 100 + rng.below(99_900) as i64,
                            currency: "USD".into(),
                        },
                        stock: if rng.below(10) == 0 {
                            0
                        } else {
                            rng.below(500) as i64 + 1
                        },
                        category_id: category_ids[rng.below(category_ids.len() as u64) as usize],
                        is_active: true,
                        rating_sum,
                        rating_count,
                        rating_avg_x100: 0,
                        created_at,
                        updated_at: created_at,
                        images: Vec::new(),
                    }
                })
                .collect();
            storage::products::insert_many(&mut tx, &batch).await?;
            made += rows;
        }
        tx.commit().await?;
    }
    storage::products::compact_facet_counts(state.db.pool(), state.db.backend()).await?;
    // Fresh statistics, so the planner knows the table is no longer tiny
    // (and, on PostgreSQL, a visibility map, so counts can read indexes only).
    let refresh = match state.db.backend() {
        kit::db::Backend::Postgres => "VACUUM (ANALYZE) products",
        kit::db::Backend::Sqlite => "ANALYZE",
    };
    sqlx::query(refresh).execute(state.db.pool()).await?;
    state.cache.invalidate_all().await;
    tracing::info!(products = n, "bulk catalogue seeded");
    Ok(n)
}
