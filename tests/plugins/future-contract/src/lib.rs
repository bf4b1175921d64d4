//! A plugin built for `ledgerbridge:connector@0.3.0`, a contract version the
//! host does not accept: the host must refuse it, naming both versions,
//! before instantiating it.

wit_bindgen::generate!({
    inline: "
        package ledgerbridge:connector@0.3.0;
        interface connector {
            describe: func() -> string;
        }
        world plugin {
            export connector;
        }
    ",
    world: "plugin",
});

struct Future;

impl exports::ledgerbridge::connector::connector::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);
