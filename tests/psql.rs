//! psql 15 against a real server: a script with DDL, DML and `\copy` under ON_ERROR_STOP, and the
//! catalog queries behind `\dt` and `\d TABLE`.

mod common;

use common::{psql_output, TestServer};

#[test]
fn psql_script_and_describe() {
    let server = TestServer::start();
    let dir = server.dir.path();
    let csv = dir.join("items.csv");
    std::fs::write(&csv, "id,name,price\n10,widget,2.50\n11,\"gadget, large\",10.00\n").expect("write csv");
    let out_csv = dir.join("out.csv");
    let script = dir.join("script.sql");
    std::fs::write(
        &script,
        format!(
            r#"
CREATE TABLE items (id integer PRIMARY KEY, name varchar(40) NOT NULL, price numeric(10,2) DEFAULT 0, note text);
CREATE TABLE tags (item_id int, tag char(8), UNIQUE (item_id, tag));
CREATE INDEX items_name_idx ON items (name);
INSERT INTO items (id, name, price) VALUES (1, 'apple', 1.25), (2, 'pear', 0.75);
INSERT INTO items (id, name) VALUES (3, 'plum');
UPDATE items SET price = price * 2 WHERE id = 1;
DELETE FROM items WHERE id = 2;
\copy items (id, name, price) from '{csv}' with (format csv, header true)
\copy (select id, name from items order by id) to '{out}' csv
INSERT INTO tags VALUES (1, 'fruit'), (3, 'fruit');
BEGIN;
ALTER TABLE items ADD COLUMN stock int DEFAULT 5;
ALTER TABLE items RENAME COLUMN note TO remark;
COMMIT;
SELECT id, name, price, stock FROM items ORDER BY id;
"#,
            csv = csv.display(),
            out = out_csv.display()
        ),
    )
    .expect("write script");
    let out = psql_output(server.port, &["-v", "ON_ERROR_STOP=1", "-At", "-f", script.to_str().unwrap_or_default()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "script failed: {}\n{}", String::from_utf8_lossy(&out.stderr), stdout);
    assert!(stdout.contains("1|apple|2.50|5\n3|plum|0.00|5\n10|widget|2.50|5\n11|gadget, large|10.00|5"), "{stdout}");
    let exported = std::fs::read_to_string(&out_csv).unwrap_or_default();
    assert_eq!(exported, "1,apple\n3,plum\n10,widget\n11,\"gadget, large\"\n");

    let dt = psql_output(server.port, &["-c", "\\dt"]);
    let dt = String::from_utf8_lossy(&dt.stdout);
    assert!(dt.contains(" public | items | table | postgres"), "{dt}");
    assert!(dt.contains(" public | tags  | table | postgres"), "{dt}");

    let d = psql_output(server.port, &["-c", "\\d items"]);
    let text = String::from_utf8_lossy(&d.stdout);
    let err = String::from_utf8_lossy(&d.stderr);
    assert!(d.status.success() && err.is_empty(), "{err}");
    for line in [
        "Table \"public.items\"",
        " id     | integer               |           | not null | ",
        " name   | character varying(40) |           | not null | ",
        " price  | numeric(10,2)         |           |          | 0",
        " remark | text                  |           |          | ",
        " stock  | integer               |           |          | 5",
        "\"items_pkey\" PRIMARY KEY, btree (id)",
        "\"items_name_idx\" btree (name)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let d = psql_output(server.port, &["-c", "\\d tags"]);
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(text.contains(" tag     | character(8) |"), "{text}");
    assert!(text.contains("\"tags_item_id_tag_key\" UNIQUE CONSTRAINT, btree (item_id, tag)"), "{text}");

    // \l lists the database with psql 15's columns (locale provider, ICU locale).
    let l = psql_output(server.port, &["-c", "\\l"]);
    let text = String::from_utf8_lossy(&l.stdout);
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    assert!(text.contains(" postgres | postgres | UTF8 ") && text.contains("| libc "), "{text}");
}
