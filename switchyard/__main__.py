from switchyard.cli import main
import sys
sys.exit(main())
