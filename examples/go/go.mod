module seed

go 1.24
