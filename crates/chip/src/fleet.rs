//! A fleet of emulated cards personalized with the development key set (`epurse.md` §4) and
//! one PSAM terminal: cards are loaded through the host's MAC2 and pay through the real
//! terminal flow, so every upload record carries a real TAC. For tests, the demo and
//! benchmarks — never production keys.

use crypto::{Algorithm, MasterKeys};

use crate::host::{UploadRecord, issue_load_mac2};
use crate::terminal::{FlowError, LoadRequest, PurchaseRequest, load, purchase};
use crate::{
    BcdDate, BcdTime, Card, CardNumber, CardType, PersonalizationRecord, Psam, TerminalId,
    personalize,
};

/// Emulated cards and the PSAM of one terminal.
pub struct Fleet {
    masters: MasterKeys,
    cards: Vec<Card>,
    numbers: Vec<CardNumber>,
    psam: Psam,
}

impl Fleet {
    /// `count` cards with issue sequences from `first_sequence` on, one profile, start date
    /// 2025-01-01, and a PSAM with `terminal`.
    pub fn new(first_sequence: u32, count: u32, alg: Algorithm, terminal: TerminalId) -> Self {
        let masters = MasterKeys::test_set();
        let start = BcdDate::new(2025, 1, 1).expect("a valid date");
        let mut cards = Vec::with_capacity(count as usize);
        let mut numbers = Vec::with_capacity(count as usize);
        for i in 0..count {
            let number = CardNumber::from_sequence(first_sequence + i).expect("a card number");
            let record = PersonalizationRecord {
                card_number: number,
                holder_name: "测试".into(),
                id_number: "41010219900101123X".into(),
                card_type: CardType::Ordinary,
                start_date: start,
                expiry_date: start.plus_years(10).expect("a valid date"),
                algorithm: alg,
                employee: false,
                pin: "123456".into(),
                rng_seed: u64::from(first_sequence + i),
            };
            cards.push(personalize(&record, &masters).expect("the test record personalizes"));
            numbers.push(number);
        }
        let psam = Psam::new(terminal, masters.purchase.clone());
        Fleet {
            masters,
            cards,
            numbers,
            psam,
        }
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    pub fn number(&self, card: usize) -> CardNumber {
        self.numbers[card]
    }

    /// The cards themselves, to present to another terminal (a simulated city whose cards
    /// ride many terminals: `citycard terminal simulate`).
    pub fn into_cards(self) -> Vec<Card> {
        self.cards
    }

    /// Loads `amount_fen` onto a card at a load terminal, the host issuing MAC2.
    pub fn load(
        &mut self,
        card: usize,
        amount_fen: u32,
        date: BcdDate,
        time: BcdTime,
    ) -> Result<(), FlowError> {
        let masters = &self.masters;
        load(
            &mut self.cards[card],
            &LoadRequest {
                amount_fen,
                terminal_id: TerminalId([0, 0, 0, 0, 0, 1]),
                date,
                time,
            },
            &mut |init| issue_load_mac2(masters, init),
        )?;
        Ok(())
    }

    /// A purchase at the fleet's terminal: the record it uploads.
    pub fn buy(
        &mut self,
        card: usize,
        amount_fen: u32,
        date: BcdDate,
        time: BcdTime,
    ) -> Result<UploadRecord, FlowError> {
        Ok(purchase(
            &mut self.cards[card],
            &mut self.psam,
            &PurchaseRequest {
                amount_fen,
                date,
                time,
            },
            &|_| false,
        )?
        .record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::verify_purchase_tac;

    #[test]
    fn fleet_purchases_carry_real_tacs() {
        let mut f = Fleet::new(7, 2, Algorithm::Sm4, TerminalId([0x11; 6]));
        let (d, t) = (
            BcdDate::new(2026, 11, 30).unwrap(),
            BcdTime::new(8, 0, 0).unwrap(),
        );
        f.load(1, 1_000, d, t).unwrap();
        let r = f.buy(1, 250, d, t).unwrap();
        assert_eq!(r.card_number, f.number(1));
        assert_eq!(
            (r.offline_counter, r.amount_fen, r.balance_before_fen),
            (0, 250, 1_000)
        );
        verify_purchase_tac(&MasterKeys::test_set().tac, &r).unwrap();
        assert_eq!(f.buy(1, 250, d, t).unwrap().offline_counter, 1);
        assert!(matches!(
            f.buy(0, 1, d, t),
            Err(FlowError::InsufficientBalance)
        ));
    }
}
