//! `emporium dlq list|replay`: look at the messages a consumer gave up on,
//! and put them back once the cause is fixed.

use anyhow::{Context, bail};
use kit::config::BusUrl;
use kit::events::{EventBus, Topology};

/// Every queue of the shop: (consuming service, event). See services/EVENTS.md.
pub const SUBSCRIPTIONS: &[(&str, &str)] = &[
    ("catalog", "order.placed"),
    ("catalog", "order.cancelled"),
    ("cart", "order.placed"),
    ("orders", "stock.reserved"),
    ("orders", "stock.rejected"),
    ("orders", "payment.succeeded"),
    ("orders", "payment.failed"),
    ("payments", "order.placed"),
    ("payments", "stock.reserved"),
    ("payments", "order.cancelled"),
    ("notifications", "user.registered"),
    ("notifications", "order.confirmed"),
    ("notifications", "order.cancelled"),
    ("notifications", "order.shipped"),
    ("notifications", "order.delivered"),
    ("notifications", "payment.refunded"),
];

#[derive(clap::Args)]
pub struct DlqArgs {
    /// RabbitMQ (amqp://…), or the event file of `emporium up`
    /// (sqlite://.emporium/bus.db).
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = kit::config::parse_bus_url, hide_env_values = true)]
    bus_url: BusUrl,
    /// Name of the topic exchange.
    #[arg(
        long,
        env = "EMPORIUM_EXCHANGE",
        value_name = "EMPORIUM_EXCHANGE",
        default_value = "emporium.events"
    )]
    exchange: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Show the dead letters of every queue (or of one: `--queue orders.payment.succeeded`).
    List {
        #[arg(long)]
        queue: Option<String>,
    },
    /// Send a queue's dead letters back to it, e.g. `replay orders.payment.succeeded`.
    Replay { queue: String },
}

fn resolve(topology: &Topology, name: &str) -> anyhow::Result<String> {
    SUBSCRIPTIONS
        .iter()
        .find(|(consumer, event)| format!("{consumer}.{event}") == name)
        .map(|(consumer, event)| topology.queue(consumer, event))
        .with_context(|| {
            let known: Vec<String> = SUBSCRIPTIONS
                .iter()
                .map(|(c, e)| format!("{c}.{e}"))
                .collect();
            format!(
                "unknown queue `{name}`; the shop's queues are: {}",
                known.join(", ")
            )
        })
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    if args.bus_url == BusUrl::Memory {
        bail!(
            "EMPORIUM_BUS_URL is memory://: an in-memory bus keeps its dead letters inside its \
             process; point EMPORIUM_BUS_URL at RabbitMQ (amqp://…) or at the event file of \
             `emporium up` (sqlite://<data dir>/bus.db)"
        );
    }
    let topology = Topology {
        exchange: args.exchange.clone(),
        ..Default::default()
    };
    let bus = EventBus::connect(&args.bus_url, topology.clone())
        .await
        .context("EMPORIUM_BUS_URL")?;
    match args.action {
        Action::List { queue } => {
            let names: Vec<String> = match queue {
                Some(q) => vec![q],
                None => SUBSCRIPTIONS
                    .iter()
                    .map(|(c, e)| format!("{c}.{e}"))
                    .collect(),
            };
            let mut total = 0;
            for name in names {
                let queue = resolve(&topology, &name)?;
                let letters = bus.dead_letters(&queue).await?;
                total += letters.len();
                if letters.is_empty() {
                    continue;
                }
                println!("{name}: {} dead letter(s)", letters.len());
                for l in letters {
                    match &l.envelope {
                        Some(e) => println!(
                            "  {}  {}  at {}  correlation {}  reason {}",
                            e.id,
                            e.event_type,
                            e.occurred_at,
                            e.correlation_id.as_deref().unwrap_or("-"),
                            l.reason
                        ),
                        None => println!(
                            "  (not an event envelope, {} bytes)  reason {}",
                            l.raw.len(),
                            l.reason
                        ),
                    }
                }
            }
            if total == 0 {
                println!("no dead letters");
            }
        }
        Action::Replay { queue } => {
            let resolved = resolve(&topology, &queue)?;
            let n = bus.replay_dead_letters(&resolved).await?;
            println!("{queue}: {n} message(s) sent back to the queue");
        }
    }
    Ok(())
}
