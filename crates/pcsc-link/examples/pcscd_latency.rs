//! Purchase latency through the real PC/SC stack (`pcsc` crate → pcscd → vpcd driver → TCP →
//! emulated card) for `docs/benchmarks.md`: median and p99 over N purchases, plus the round
//! trip of a single APDU, so the per-purchase figure can be read as APDUs × round trip.
//!
//! Run: `cargo run --release -p pcsc-link --example pcscd_latency -- [N] [3des|sm4]`
//! (starts pcscd when none is running; needs the Debian packages pcscd and vsmartcard-vpcd).

use std::time::{Duration, Instant};

use chip::terminal::PurchaseRequest;
use chip::{
    BcdDate, BcdTime, CardChannel, CardNumber, CardType, ChannelError, PersonalizationRecord, Psam,
    TerminalId, personalize,
};
use crypto::{Algorithm, MasterKeys};
use pcsc_link::PcscChannel;
use pcsc_link::bench::{measure_purchases, percentile};
use pcsc_link::daemon::ensure_pcscd;
use pcsc_link::vpcd::{VirtualCard, spawn};

/// Counts the APDUs a flow sends over a channel.
struct Counting<C> {
    inner: C,
    apdus: usize,
}

impl<C: CardChannel> CardChannel for Counting<C> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.apdus += 1;
        self.inner.transmit(command)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let alg = match args.next().as_deref() {
        None | Some("3des") => Algorithm::Tdes,
        Some("sm4") => Algorithm::Sm4,
        Some(other) => return Err(format!("algorithm {other:?}: 3des or sm4").into()),
    };

    let pcscd = ensure_pcscd()?;
    let start = BcdDate::parse("20250101")?;
    let record = PersonalizationRecord {
        card_number: CardNumber::parse("4101000000000018")?,
        holder_name: "Zhang San".into(),
        id_number: "41010219900101123X".into(),
        card_type: CardType::Ordinary,
        start_date: start,
        expiry_date: start.plus_years(10)?,
        algorithm: alg,
        employee: false,
        pin: "123456".into(),
        rng_seed: 1,
    };
    let mut image = personalize(&record, &MasterKeys::test_set())?.into_image();
    for app in &mut image.apps {
        if let Some(p) = &mut app.purse {
            p.balance_fen = chip::BALANCE_MAX_FEN;
        }
    }
    // In memory: the bench measures the PC/SC path, not the image file's fsync.
    let link = spawn(
        VirtualCard::new(chip::Card::from_image(image), None),
        pcscd.vpcd_config(),
    )?;
    let mut card = Counting {
        inner: PcscChannel::connect(Some("Virtual PCD"), 15_000)?,
        apdus: 0,
    };
    let mut psam = Psam::new(
        TerminalId::parse("112233445566")?,
        MasterKeys::test_set().purchase,
    );
    let request = PurchaseRequest {
        amount_fen: 1,
        date: BcdDate::parse("20261126")?,
        time: BcdTime::new(14, 30, 0)?,
    };

    // Warm-up, and the APDU count of one purchase.
    measure_purchases(&mut card, &mut psam, &request, 3, &mut |_| {})?;
    card.apdus = 0;
    let report = measure_purchases(&mut card, &mut psam, &request, n, &mut |o| {
        assert!(chip::host::verify_purchase_tac(&MasterKeys::test_set().tac, &o.record).is_ok());
    })?;
    let apdus_per_purchase = card.apdus as f64 / n as f64;

    // One APDU round trip (GET BALANCE), for comparison.
    let mut rtt: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            card.transmit(&[0x80, 0x5C, 0x00, 0x02, 0x04])
                .map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    rtt.sort();

    println!(
        "{n} purchases ({alg:?}) through pcscd/vpcd: median {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         {apdus_per_purchase:.0} card APDUs per purchase; single APDU round trip median {:.3} ms, \
         p99 {:.3} ms",
        ms(report.median),
        ms(report.p99),
        ms(report.max),
        ms(percentile(&rtt, 50)),
        ms(percentile(&rtt, 99)),
    );
    drop(card);
    let (_, result) = link.stop();
    result?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
