module portlicense.bench/loadgen

go 1.19
