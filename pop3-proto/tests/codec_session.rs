//! The RFC 1939 §10 example session at the codec level (no state machines): both directions
//! parsed line by line, each decoder's remainder feeding the next and the body decoder in
//! between, as a client and a server would.

use pop3_proto::body::{DotStuffer, DotUnstuffer};
use pop3_proto::decode::{self, ListingLine};
use pop3_proto::framing::{Framed, LineFramer, LineLimits};
use pop3_proto::{Command, Encode, MsgNum, ScanListing, Stat};

fn m(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

const CLIENT: &[u8] = b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n\
STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n";

fn messages() -> [Vec<u8>; 2] {
    [
        b"Subject: one\r\n\r\n.leading dot\r\n.\r\nend\r\n".to_vec(),
        b"Subject: two\r\n\r\nno final CRLF".to_vec(),
    ]
}

fn server_stream() -> Vec<u8> {
    let mut s = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n\
+OK mrose's maildrop has 2 messages (320 octets)\r\n\
+OK 2 320\r\n\
+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
        .to_vec();
    let [one, two] = messages();
    let mut enc = DotStuffer::new();
    s.extend_from_slice(b"+OK 120 octets\r\n");
    enc.encode(&one, &mut s);
    enc.finish(&mut s);
    s.extend_from_slice(b"+OK message 1 deleted\r\n+OK 200 octets\r\n");
    enc.encode(&two, &mut s);
    enc.finish(&mut s);
    s.extend_from_slice(
        b"+OK message 2 deleted\r\n+OK dewey POP3 server signing off (maildrop empty)\r\n",
    );
    s
}

#[test]
fn server_reads_the_client_side_through_the_framer() {
    let mut framer = LineFramer::new(LineLimits::DEFAULT.command);
    let mut cmds = Vec::new();
    // Three octets at a time, as a slow client would send them.
    for chunk in CLIENT.chunks(3) {
        let mut input = chunk;
        loop {
            let (used, found) = framer.next_line(input);
            input = &input[used..];
            match found {
                Framed::Line(l) => {
                    let (rest, cmd) = decode::command(l).unwrap();
                    assert!(rest.is_empty());
                    cmds.push(cmd);
                }
                Framed::TooLong { .. } => panic!("too long"),
                Framed::NeedMore => break,
            }
        }
    }
    assert_eq!(cmds.len(), 8);
    assert!(matches!(&cmds[0], Command::Apop { name, .. } if name.as_bytes() == b"mrose"));
    assert_eq!(
        cmds[1..],
        [
            Command::Stat,
            Command::List(None),
            Command::Retr(m(1)),
            Command::Dele(m(1)),
            Command::Retr(m(2)),
            Command::Dele(m(2)),
            Command::Quit,
        ]
    );
    // And the client side re-encodes to the same octets.
    let again: Vec<u8> = cmds.iter().flat_map(Encode::to_bytes).collect();
    assert_eq!(again, CLIENT);
}

#[test]
fn client_reads_the_server_side_with_remainders() {
    let stream = server_stream();
    let (mut rest, greeting) = decode::greeting(&stream).unwrap();
    assert_eq!(
        greeting.timestamp().unwrap().as_bytes(),
        b"<1896.697170952@dbc.mtview.ca.us>"
    );
    let mut cmds = CLIENT;
    let mut bodies = Vec::new();
    let mut listing = Vec::new();
    let mut stat = None;
    while !cmds.is_empty() {
        let (c, cmd) = decode::command(cmds).unwrap();
        cmds = c;
        let (r, line) = decode::status_line(rest).unwrap();
        rest = r;
        assert!(line.is_ok(), "{cmd:?}");
        if cmd == Command::Stat {
            stat = Some(decode::parse_stat(line.text().as_bytes()).unwrap());
        }
        if !cmd.expects_multiline() {
            continue;
        }
        if let Command::Retr(_) = cmd {
            let mut body = Vec::new();
            let (used, done) = DotUnstuffer::new().decode_into(rest, &mut body).unwrap();
            assert!(done);
            rest = &rest[used..];
            bodies.push(body);
        } else {
            loop {
                let (r, l) = decode::listing_line(rest).unwrap();
                rest = r;
                match l {
                    ListingLine::Data(d) => listing.push(decode::parse_scan_listing(d).unwrap()),
                    ListingLine::End => break,
                }
            }
        }
    }
    assert!(rest.is_empty());
    assert_eq!(
        stat,
        Some(Stat {
            count: 2,
            size: 320
        })
    );
    assert_eq!(
        listing,
        [
            ScanListing {
                msg: m(1),
                size: 120
            },
            ScanListing {
                msg: m(2),
                size: 200
            }
        ]
    );
    let [one, two] = messages();
    assert_eq!(bodies[0], one);
    assert_eq!(bodies[1], [two, b"\r\n".to_vec()].concat());
}
