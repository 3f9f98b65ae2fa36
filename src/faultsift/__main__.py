from faultsift.cli import main

main()
